"""Bugs found by trying the `kubernetes` transform as a hostile user would (issue 12), each as a reproduction.

Same harness as ``test_kubernetes_enrichment`` (tail -> kubernetes -> a collecting sink, the fake API server)."""

from __future__ import annotations

import asyncio

from helpers import wait_for
from test_kubernetes_enrichment import node, simple_pod, write


async def test_after_the_api_server_comes_back_a_late_pod_is_waited_for_again(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A watch the API server accepted again (200, no event yet: a quiet node) is an answer: a file whose pod
    comes a moment later waits for it, as before the outage, instead of passing as ``api_unavailable``."""
    async with node(tmp_path) as n:
        async with n.running(wait_for_pod="5s"):
            await n.k8s.go_down()
            await wait_for(lambda: not n.pods.healthy)
            await n.k8s.come_back()
            await wait_for(lambda: n.k8s.watches_of("pods"), timeout=10)  # the watch is open again, quiet
            await wait_for(lambda: n.pods.healthy)  # its 200 is an answer: no event needed
            late = simple_pod("late", labels={"app": "late"})
            write(n.file(late), "first", "second")
            await asyncio.sleep(0.5)  # the pod shows up in the API a moment after its first lines
            n.k8s.add_pod(late)
            await wait_for(lambda: len(n.events) == 2)
            assert [e["kubernetes"].get("labels") for e in n.events] == [{"app": "late"}] * 2
            assert n.misses() == {}
