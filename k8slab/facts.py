"""pyinfra facts the deploy phases read before acting (pyinfra's own cover the rest)."""

from __future__ import annotations

import re

from pyinfra.api import FactBase

from k8slab import archives, weave


class _Lines(FactBase):
    """The non-empty lines a command prints (none when it fails)."""

    default = list

    def process(self, output):
        return [line.strip() for line in output if line.strip()]


class ActiveSwap(_Lines):
    """Swap devices and files in use now (kubelet refuses to start by default with swap on)."""

    def command(self) -> str:
        return "swapon --noheadings --show=NAME 2>/dev/null || true"


class HeldPackages(_Lines):
    """Packages apt will not upgrade (`apt-mark showhold`)."""

    def command(self) -> str:
        return "apt-mark showhold 2>/dev/null || true"


class CriDockerdVersion(FactBase):
    """Version of the installed cri-dockerd binary, or None."""

    def command(self, path: str) -> str:
        return f"{path} --version 2>&1 || true"

    def process(self, output):
        match = re.search(r"cri-dockerd (\d+\.\d+\.\d+)", "\n".join(output))
        return match.group(1) if match else None


class ClusterProblems(FactBase):
    """What is not ready yet (one line each; [] when all is ready), or None before kubeadm init.

    Runs the check script the control-plane phase installs; see cluster-ready.sh.j2.
    """

    def command(self, script: str, nodes: list[str]) -> str:
        return (
            f"if [ -x {script} ] && [ -f /etc/kubernetes/admin.conf ]; "
            f"then {script} 0 {' '.join(nodes)} || true; else echo no-cluster; fi"
        )

    def process(self, output):
        if output == ["no-cluster"]:
            return None
        return [line for line in output if line.strip() and not line.startswith("cluster ready")]


class MissingKernelModules(_Lines):
    """Which of these modules are neither loaded nor built into the running kernel."""

    def command(self, modules: list[str]) -> str:
        checks = " ".join(modules)
        return (
            f"for m in {checks}; do "
            'grep -q "^$m " /proc/modules 2>/dev/null '
            '|| grep -q "/$m.ko" /lib/modules/$(uname -r)/modules.builtin 2>/dev/null '
            "|| [ -d /sys/module/$m ] || echo $m; done"
        )

    def process(self, output):
        return [line.strip() for line in output if line.strip()]


class KernelModuleState(FactBase):
    """One module's state: loaded, built in, loadable or missing (k8slab.weave's probe, the
    one `labctl doctor`'s weave-datapath check runs)."""

    def command(self, module: str) -> str:
        return weave.probe_command((module,))

    def process(self, output):
        words = " ".join(output).split(None, 1)
        return words[1].strip() if len(words) == 2 else "missing"


class KubeObjectExists(FactBase):
    """Whether `kubectl get` finds the object, with the admin kubeconfig (False before init)."""

    def command(self, kind: str, object_name: str, namespace: str) -> str:
        return (
            "KUBECONFIG=/etc/kubernetes/admin.conf "
            f"kubectl -n {namespace} get {kind} {object_name} -o name 2>/dev/null || true"
        )

    def process(self, output):
        return any(line.strip() for line in output)


class DpkgInterrupted(FactBase):
    """Whether an earlier dpkg run stopped half-way (a host that went down mid-install):
    apt then refuses every install until `dpkg --configure -a`."""

    def command(self) -> str:
        return "ls -A /var/lib/dpkg/updates 2>/dev/null | head -n 1"

    def process(self, output):
        return any(line.strip() for line in output)


class DockerImageTags(_Lines):
    """repository:tag of every image Docker has (none when Docker is not there yet)."""

    def command(self) -> str:
        return f"{archives.TAGS_COMMAND} 2>/dev/null || true"


class KubeadmPauseImage(FactBase):
    """The pause image kubeadm pulls for its own version and the given image repository
    (registry.k8s.io/pause:3.10.1), or None without kubeadm. Offline-safe: an explicit
    --kubernetes-version makes kubeadm ask nobody."""

    def command(self, repository: str) -> str:
        return (
            "v=$(kubeadm version -o short 2>/dev/null) && kubeadm config images list "
            f'--kubernetes-version "$v" --image-repository {repository} 2>/dev/null || true'
        )

    def process(self, output):
        return next((line.strip() for line in output if "/pause:" in line), None)


class KubeadmVersion(FactBase):
    """`kubeadm version -o short` (v1.35.2), or None when kubeadm is not installed."""

    def command(self) -> str:
        return "kubeadm version -o short 2>/dev/null || true"

    def process(self, output):
        match = re.search(r"^v\d+\.\d+\.\d+\S*$", "\n".join(output).strip(), re.M)
        return match.group(0) if match else None
