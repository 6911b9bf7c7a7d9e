"""A federated run while it runs: launching it in the background, its progress, and its nodes' health.

The Federated page never runs Flower itself: :func:`launch_run` starts ``vigil fl run`` as a
process of its own and returns at once. That process (:mod:`core.cli.fl`) claims the launch
(:func:`claim_launch`), writes each event of the ServerApp's log into the store as it comes
(:func:`note_progress`) and marks the launch ended once the run is recorded
(:func:`end_launch`); the page reads all of it back from the store. One run at a time: a
launch while another launcher process is alive is refused, and a launch whose process died
without recording its run is marked ended the next time anyone looks.

Every reply of a run is also a node check-in: :func:`nodes_from_events` turns the log's node
profiles and the server's verdicts into each site's last-seen record (its heartbeat).
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from core.audit.events import AuditAction
from core.errors import BadInputError
from core.federated.compatibility import NodeProfile, incompatibility
from core.federated.plan import STRATEGIES
from core.federated.secure import default_threshold
from core.services.permissions import Permission, SignedInUser, parse_role, require
from core.store import audit_log, federated_runs, sites, users
from core.store.engine import SessionFactory
from core.store.federated_runs import FlLaunchRecord, FlNodeRecord
from core.types import JSONObject

__all__ = [
    "RUN_KEY",
    "LaunchRequest",
    "Spawn",
    "check_request",
    "claim_launch",
    "end_launch",
    "launch_run",
    "new_run_key",
    "nodes_from_events",
    "note_progress",
    "refuse_if_running",
    "running_launch",
    "spawn_detached",
]

#: What a run key looks like (``vigil fl run`` makes them; ``--run-key`` must match).
RUN_KEY: Final = re.compile(r"fl-[0-9]{8}T[0-9]{6}-[0-9a-f]{6}")
_INCOMPATIBLE: Final = "incompatible node: "

#: Starts ``argv`` with ``env`` in a session of its own, output to ``log``; returns its process id.
Spawn = Callable[[Sequence[str], Mapping[str, str], Path], int]


@dataclass(frozen=True, slots=True)
class LaunchRequest:
    """What the Federated page asks for: the ``vigil fl run`` options it sets.

    Attributes
    ----------
    sites : tuple of str
        Registered sites with signing keys, at least 2.
    rounds : int
    strategy : str
        One of :data:`core.federated.plan.STRATEGIES`.
    min_sites : int
        Quorum per round, 1 to ``len(sites)``.
    dp_noise_multiplier, dp_clipping_norm, epsilon_budget : float or None
        Client-level DP (all three, or none); fedavg only.
    dp_delta : float
    version : str or None
        The name to register the aggregate under.
    secure_aggregation : bool
        Flower's SecAgg+ (``vigil fl run --secure-aggregation``): fedavg only, without DP.
    secagg_threshold : int or None
        Sites needed to unmask a round's sum, 2 to ``len(sites)``; None: the quorum (at least 2).
    """

    sites: tuple[str, ...]
    rounds: int
    strategy: str = "fedavg"
    min_sites: int = 0
    dp_noise_multiplier: float | None = None
    dp_clipping_norm: float | None = None
    dp_delta: float = 1e-5
    epsilon_budget: float | None = None
    version: str | None = None
    secure_aggregation: bool = False
    secagg_threshold: int | None = None

    @property
    def private(self) -> bool:
        """Whether the run is to be differentially private."""
        return self.dp_noise_multiplier is not None

    def to_json(self) -> JSONObject:
        """JSON-ready (the launch's ``request``)."""
        return {
            "sites": list(self.sites),
            "rounds": self.rounds,
            "strategy": self.strategy,
            "min_sites": self.min_sites or len(self.sites),
            "dp": None
            if not self.private
            else {
                "noise_multiplier": self.dp_noise_multiplier,
                "clipping_norm": self.dp_clipping_norm,
                "delta": self.dp_delta,
                "epsilon_budget": self.epsilon_budget,
            },
            "version": self.version,
            "secure_aggregation": None
            if not self.secure_aggregation
            else {"threshold": self.secagg_threshold or default_threshold(self.min_sites or len(self.sites))},
        }

    def argv(self, run_key: str, actor: str) -> list[str]:
        """The ``vigil`` arguments that run this request as ``run_key`` for ``actor``."""
        args = ["fl", "run", "--sites", ",".join(self.sites), "--rounds", str(self.rounds)]
        args += ["--strategy", self.strategy, "--min-sites", str(self.min_sites or len(self.sites))]
        args += ["--run-key", run_key, "--actor", actor]
        if self.private:
            args += ["--dp-noise-multiplier", repr(self.dp_noise_multiplier), "--dp-clipping-norm"]
            args += [repr(self.dp_clipping_norm), "--dp-delta", repr(self.dp_delta)]
            args += ["--epsilon-budget", repr(self.epsilon_budget)]
        if self.secure_aggregation:
            args += ["--secure-aggregation"]
            if self.secagg_threshold is not None:
                args += ["--secagg-threshold", str(self.secagg_threshold)]
        if self.version:
            args += ["--version", self.version]
        return [*args, "--json"]


def check_request(request: LaunchRequest) -> None:
    """Refuse a request ``vigil fl run`` would refuse, naming the bad value (before anything starts).

    Raises
    ------
    BadInputError
        Fewer than 2 sites or one named twice, rounds below 1, an unknown strategy, a quorum out of
        range, DP settings given in part, not positive, or with another strategy than fedavg,
        secure aggregation with another strategy or with DP, or its threshold out of range.
    """
    if len(request.sites) < 2 or len(set(request.sites)) != len(request.sites):
        raise BadInputError(f"a federated run needs at least 2 different sites, got {', '.join(request.sites)!r}")
    if request.rounds < 1:
        raise BadInputError(f"a run needs at least 1 round, got {request.rounds}")
    if request.strategy not in STRATEGIES:
        raise BadInputError(f"strategy must be one of {', '.join(STRATEGIES)}, got {request.strategy!r}")
    if not 0 <= request.min_sites <= len(request.sites):
        raise BadInputError(f"quorum must be between 1 and {len(request.sites)} sites, got {request.min_sites}")
    dp = (request.dp_noise_multiplier, request.dp_clipping_norm, request.epsilon_budget)
    if any(v is not None for v in dp):
        if any(v is None or not v > 0 for v in dp):
            raise BadInputError(
                f"differential privacy needs a positive noise multiplier, clipping norm and ε budget, got {dp}"
            )
        if not 0 < request.dp_delta < 1:
            raise BadInputError(f"δ must be between 0 and 1, got {request.dp_delta}")
        if request.strategy != "fedavg":
            raise BadInputError(f"differential privacy runs with the fedavg strategy only, got {request.strategy!r}")
    _check_secure(request)


def _check_secure(request: LaunchRequest) -> None:
    """SecAgg+ runs alone (see ``core.services.federated``): plain fedavg, no DP, a threshold the sites can meet."""
    if not request.secure_aggregation:
        if request.secagg_threshold is not None:
            raise BadInputError("a secure-aggregation threshold needs secure aggregation")
        return
    if request.strategy != "fedavg" or request.private:
        mode = "differential privacy" if request.private else f"the {request.strategy!r} strategy"
        raise BadInputError(f"secure aggregation (SecAgg+) runs with plain fedavg only, not with {mode}")
    threshold = request.secagg_threshold
    if threshold is not None and not 2 <= threshold <= len(request.sites):
        raise BadInputError(
            f"the secure-aggregation threshold must be between 2 and {len(request.sites)} sites, got {threshold}"
        )


def new_run_key(now: datetime) -> str:
    """A fresh run key for a run starting at ``now`` (UTC)."""
    return f"fl-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (0: not started yet, counted as alive)."""
    if pid == 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _retire_dead(session: Any, now: datetime) -> list[FlLaunchRecord]:
    """Mark ended every running launch whose process is gone; return those still running."""
    running = []
    for launch in federated_runs.list_launches(session, state="running"):
        if _alive(launch.pid):
            running.append(launch)
        else:
            federated_runs.update_launch(
                session,
                launch.run_key,
                heartbeat_at=now,
                state="ended",
                reason=f"the launcher process {launch.pid} ended without recording the run",
            )
    return running


def running_launch(session_factory: SessionFactory, *, now: datetime) -> FlLaunchRecord | None:
    """The launch running now, if any (dead launchers are marked ended on the way)."""
    with session_factory.begin() as session:
        running = _retire_dead(session, now)
    return running[0] if running else None


def refuse_if_running(session_factory: SessionFactory, run_key: str, *, now: datetime) -> None:
    """Refuse to start ``run_key`` while another run is running (dead launchers are retired first).

    Raises
    ------
    BadInputError
        Another run's launcher process is alive.
    """
    with session_factory.begin() as session:
        _refuse_if_running(session, run_key, now)


def _refuse_if_running(session: Any, run_key: str, now: datetime) -> None:
    others = [launch for launch in _retire_dead(session, now) if launch.run_key != run_key]
    if others:
        raise BadInputError(
            f"federated run {others[0].run_key} is still running (launched by {others[0].launched_by}, "
            f"process {others[0].pid}): one run at a time; wait for it to end"
        )


def launch_run(  # noqa: PLR0913 - keyword-only; one argument per input of the launch
    session_factory: SessionFactory,
    user: SignedInUser,
    request: LaunchRequest,
    *,
    vigil: Path,
    environ: Mapping[str, str],
    logs_dir: Path,
    now: Callable[[], datetime],
    spawn: Spawn,
) -> str:
    """Start ``vigil fl run`` for ``request`` in the background; return the run key at once.

    The launch row and its audit entry are written first, in one transaction that also refuses a
    second launch while one runs; then the process is started and its id recorded. A process that
    cannot be started leaves the launch ended with the reason.

    Parameters
    ----------
    vigil : Path
        The ``vigil`` executable.
    environ : mapping
        The process's environment (the page's settings as ``VIGIL_HOME`` and ``VIGIL_DATABASE_URL``).
    logs_dir : Path
        Receives the process's output (``RUN.log``).
    spawn : Spawn
        Starts the process (:func:`spawn_detached` in the app).

    Raises
    ------
    PermissionDeniedError
        The user may not run federated training.
    BadInputError
        A bad request, an unknown site or one without a signing key, or a run still running.
    """
    require(user, Permission.RUN_FEDERATED)
    check_request(request)
    at = now()
    run_key = new_run_key(at)
    with session_factory.begin() as session:
        stored = users.get_user(session, user.username)
        # The role is re-read in the transaction: a role withdrawn since sign-in takes effect now.
        require(SignedInUser(stored.username, parse_role(stored.role)), Permission.RUN_FEDERATED)
        keys = federated_runs.site_keys(session)
        for site in request.sites:
            sites.get_site(session, site)
            if site not in keys:
                raise BadInputError(f"site {site!r} has no registered signing key: run `vigil fl keys {site}` first")
        _refuse_if_running(session, run_key, at)
        launch = FlLaunchRecord(run_key, 0, user.username, "running", "", request.to_json(), (), at, at)
        federated_runs.add_launch(session, launch)
        audit_log.append(
            session,
            actor=user.username,
            action=AuditAction.FL_RUN_LAUNCHED,
            subject=run_key,
            payload={"request": request.to_json()},
            recorded_at=at.isoformat(),
        )
    try:
        logs_dir.mkdir(parents=True, exist_ok=True)
        pid = spawn([str(vigil), *request.argv(run_key, user.username)], environ, logs_dir / f"{run_key}.log")
    except OSError as exc:
        end_launch(session_factory, run_key, reason=f"the launcher could not be started: {exc}", now=now)
        raise BadInputError(f"the federated run could not be started: {exc}") from exc
    with session_factory.begin() as session:
        federated_runs.update_launch(session, run_key, heartbeat_at=now(), pid=pid)
    return run_key


def spawn_detached(argv: Sequence[str], environ: Mapping[str, str], log: Path) -> int:
    """Start ``argv`` in a new session (it outlives the page's rerun), output to ``log``; its pid.

    A daemon thread waits for it, so once it exits it is reaped: a zombie would still answer
    :func:`_alive`, and a dead launcher would then block every launch after it.
    """
    with log.open("ab") as out:
        proc = subprocess.Popen(  # noqa: S603 - argv is built by LaunchRequest.argv, no shell
            list(argv), env=dict(environ), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    threading.Thread(target=proc.wait, name=f"reap-{proc.pid}", daemon=True).start()
    return proc.pid


def claim_launch(
    session_factory: SessionFactory, run_key: str, *, pid: int, actor: str, request: JSONObject, now: datetime
) -> None:
    """The launcher process takes its launch: the page's row if it has one, else a new one.

    A run started from the command line gets its row here, so the page shows it too and the
    one-run-at-a-time rule covers both ways of starting one.

    Raises
    ------
    BadInputError
        Another run is still running.
    """
    with session_factory.begin() as session:
        _refuse_if_running(session, run_key, now)
        if not federated_runs.update_launch(session, run_key, heartbeat_at=now, pid=pid):
            federated_runs.add_launch(
                session, FlLaunchRecord(run_key, pid, actor, "running", "", request, (), now, now)
            )


def end_launch(session_factory: SessionFactory, run_key: str, *, reason: str, now: Callable[[], datetime]) -> None:
    """Mark ``run_key``'s launch ended (its run is recorded, or it failed before starting: ``reason``)."""
    with session_factory.begin() as session:
        federated_runs.update_launch(session, run_key, heartbeat_at=now(), state="ended", reason=reason)


def note_progress(
    session_factory: SessionFactory,
    run_key: str,
    events: Sequence[JSONObject],
    *,
    expected: Mapping[str, Any],
    now: datetime,
) -> None:
    """Store the run's log so far, and the check-ins of its newest event, in one transaction.

    Only the newest event's nodes are saved: an older reply must not refresh a node's heartbeat.
    """
    with session_factory.begin() as session:
        federated_runs.update_launch(session, run_key, heartbeat_at=now, events=events)
        for node in nodes_from_events(events[-1:], run_key=run_key, expected=expected, seen_at=now):
            federated_runs.save_node(session, node)


def nodes_from_events(
    events: Sequence[Mapping[str, Any]], *, run_key: str, expected: Mapping[str, Any], seen_at: datetime
) -> list[FlNodeRecord]:
    """Each site's latest check-in in ``events``: the profile its node reported and the verdict on it.

    A training reply's verdict is the server's (refused as an incompatible node, or not); an
    evaluation reply is unsigned, so its profile is judged against ``expected`` here. A node was
    seen when the ServerApp logged the event (its ``at``), else at ``seen_at``.
    """
    latest: dict[str, FlNodeRecord] = {}
    want = NodeProfile.from_dict(expected) if expected else None
    for e in events:
        at = datetime.fromisoformat(str(e["at"])) if e.get("at") else seen_at
        if e.get("event") == "round":
            for u in e.get("updates", []):
                if isinstance(u, dict) and isinstance(u.get("node"), dict):
                    reason = str(u.get("reason", ""))
                    bad = reason.removeprefix(_INCOMPATIBLE) if reason.startswith(_INCOMPATIBLE) else ""
                    latest[str(u["site"])] = _node(str(u["site"]), u["node"], bad, run_key, at)
        elif e.get("event") == "evaluate":
            for site, profile in dict(e.get("nodes") or {}).items():
                reported = NodeProfile.from_dict(profile)
                bad = "" if want is None else incompatibility(reported, want)
                latest[str(site)] = _node(str(site), profile, bad, run_key, at)
    return [latest[s] for s in sorted(latest)]


def _node(site: str, profile: Mapping[str, Any], reason: str, run_key: str, seen_at: datetime) -> FlNodeRecord:
    p = NodeProfile.from_dict(profile)
    return FlNodeRecord(
        site, p.vigil_version, p.flwr_version, p.arch_sha256, p.preprocessing_sha256,
        not reason, reason, run_key, seen_at,
    )  # fmt: skip
