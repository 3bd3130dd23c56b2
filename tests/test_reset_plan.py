"""labctl reset's iptables plan on real `iptables -S` output (tests/fixtures/e2e: recorded on
the test bed's master with Weave Net running)."""

from __future__ import annotations

import shlex
from pathlib import Path

from k8slab.reset import plan_iptables

NOTE = Path(__file__).parent / "fixtures" / "e2e" / "iptables-S-filter-weave-note.master.txt"


def test_a_quoted_comment_with_single_quotes_is_deleted_by_its_real_text():
    rules = "-N WEAVE-NPC\n-N WEAVE-NPC-EGRESS\n" + NOTE.read_text()
    jumps, ours = plan_iptables(rules)
    assert ours == ["WEAVE-NPC", "WEAVE-NPC-EGRESS"]
    assert [shlex.split(j) for j in jumps] == [
        ["-D", "FORWARD", "-i", "weave", "-m", "comment", "--comment",
         "NOTE: this must go before '-j KUBE-FORWARD'", "-j", "WEAVE-NPC-EGRESS"],
        ["-D", "FORWARD", "-o", "weave", "-m", "comment", "--comment",
         "NOTE: this must go before '-j KUBE-FORWARD'", "-j", "WEAVE-NPC"],
    ]  # fmt: skip
