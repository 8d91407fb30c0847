"""One Ray auth mode for the whole test process.

Ray keeps the auth mode it first saw in this process, while each cluster it starts reads the environment
of its own start. test_cluster joins loopback test nodes started with ``RAY_AUTH_MODE=disabled``; an
embedded cluster started after that test restored the environment came up in token mode, and this
process, still in 'disabled', could not talk to it ("InvalidAuthToken", seen when test_determinism ran
after test_cluster). Every Ray start in the suite is on this machine, so all use the same mode.
"""

import os

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
