"""Where the jobs run: ``none`` (this process), ``local`` (a Ray instance started inside this process and
torn down at exit), ``auto`` (the cluster ``RAY_ADDRESS`` names; ``local`` when it is unset) or
``ray://HOST:PORT`` / ``HOST:PORT``.

The embedded instance is sized for a shared machine: no dashboard, no usage stats, workers at the
driver's own priority (Ray's default nice 15 makes them yield to every other process), a 128 MiB object
store (jobs return records of a few hundred bytes; artifacts stay in OUT), logs and sockets in a temp
dir under OUT — or, when OUT's path is too long for a Unix socket (108 bytes, and Ray appends ~70), a
short one under /tmp, removed at exit either way.

``unschedulable`` compares a job's demand with each live node's total resources, so a job that asks
for a resource no node has (``tensorrt``, 4 CPUs on 2-CPU nodes) is reported before anything is
submitted instead of waiting forever in Ray's queue. Nodes an autoscaler would add later are not known.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from forgeml.batch.spec import Resources
from forgeml.errors import InputError, first_line, missing_extra

OBJECT_STORE_BYTES = 128 << 20
_SOCKET_ROOM = 36  # Ray's session dir and socket names take the rest of a socket path's 107 bytes


@dataclass(frozen=True)
class Node:
    id: str
    host: str
    resources: dict[str, float]

    def to_json(self) -> dict:
        return {"id": self.id, "host": self.host, "resources": self.resources}


@dataclass
class Cluster:
    kind: str  # none | local | remote
    address: str
    nodes: list[Node] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"kind": self.kind, "address": self.address, "nodes": [n.to_json() for n in self.nodes]}


def check_cluster(text: str) -> str:
    """``local``, ``auto``, ``none``, ``ray://HOST:PORT`` or ``HOST:PORT``; else the one-line error."""
    if text in ("local", "auto", "none") or re.fullmatch(r"(ray://)?[A-Za-z0-9_.\-\[\]:]+:[0-9]{1,5}", text):
        return text
    raise InputError(f"`BatchOptions.cluster` {text!r}: choose local, auto, none or ray://HOST:PORT")


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@contextlib.contextmanager
def connect(cluster: str, out: Path) -> Iterator[Cluster]:
    """The cluster for the batch's lifetime: started (local) or joined, and shut down or left at exit."""
    check_cluster(cluster)
    if cluster == "none":
        yield Cluster("none", "", [Node("", socket.gethostname(), {"CPU": float(usable_cpus())})])
        return
    try:
        import ray
    except ImportError as e:
        raise missing_extra("ray", "batch") from e
    temp = None
    if cluster == "auto" and not os.environ.get("RAY_ADDRESS", "").strip():
        cluster = "local"  # auto joins RAY_ADDRESS when it is set; else the embedded instance
    if cluster == "local":
        os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
        # Ray starts workers at nice 15 by default; here they are the batch's only work, and at 15 they yield to
        # everything else on a shared machine (measured here at load 30 on 2 cores: 19 of 40 jobs in 21 min, vs
        # all 40 in 7 min with --cluster none).
        os.environ.setdefault("RAY_worker_niceness", "0")
        temp = _temp_dir(out)
        kwargs = dict(address="local", num_cpus=usable_cpus(), include_dashboard=False, dashboard_port=_free_port(),
                      object_store_memory=OBJECT_STORE_BYTES, _temp_dir=str(temp))
        address = "local"
    else:
        address = os.environ["RAY_ADDRESS"].strip() if cluster == "auto" else cluster
        kwargs = dict(address=address)
    try:
        import logging

        ray.init(log_to_driver=False, logging_level=logging.ERROR, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        _remove(temp)
        raise InputError(f"`BatchOptions.cluster` {cluster}: could not start or join Ray ({first_line(e)})") from e
    try:
        yield Cluster("local" if cluster == "local" else "remote", address, nodes())
    finally:
        ray.shutdown()
        _remove(temp)


def nodes() -> list[Node]:
    """The live nodes of the connected cluster and each one's total resources."""
    import ray

    return [Node(n["NodeID"], n.get("NodeManagerHostname") or n.get("NodeManagerAddress", ""),
                 {k: float(v) for k, v in n.get("Resources", {}).items() if not k.startswith("node:")})
            for n in ray.nodes() if n.get("Alive")]


def unschedulable(resources: Resources, nodes: list[Node]) -> str | None:
    """Why no node can ever run a job asking for ``resources``, or None when one can."""
    demand = resources.demand()
    if any(all(n.resources.get(k, 0.0) >= v for k, v in demand.items()) for n in nodes):
        return None
    short = []
    for k, v in demand.items():
        most = max((n.resources.get(k, 0.0) for n in nodes), default=0.0)
        if most < v:
            short.append(f"{k} {_amount(k, v)} (no node has it)" if most == 0 else
                         f"{k} {_amount(k, v)} (the most any node has is {_amount(k, most)})")
    if short:
        return "no node can run it: it asks for " + ", ".join(short)
    asked = ", ".join(f"{k} {_amount(k, v)}" for k, v in demand.items())
    return f"no node can run it: no single node has {asked} together"


def _amount(key: str, value: float) -> str:
    if key in ("memory", "object_store_memory"):
        return f"{value / 2**30:.1f} GiB"
    return f"{value:g}"


def _temp_dir(out: Path) -> Path:
    """Ray's temp dir: OUT/.ray when its path leaves room for Ray's socket names, else a short /tmp one."""
    short = out.resolve() / ".ray"
    if len(str(short)) <= _SOCKET_ROOM:
        short.mkdir(parents=True, exist_ok=True)
        return short
    return Path(tempfile.mkdtemp(prefix="fgray-", dir="/tmp" if os.path.isdir("/tmp") else None))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _remove(temp: Path | None) -> None:
    if temp is not None:
        shutil.rmtree(temp, ignore_errors=True)
