"""One screen that answers "why did this cycle fail": ``batos cycles`` and ``:cycle``.

Reads only. A cycle's story is its brief, its history and its artifacts in
order; this module turns them into plain data (:func:`cycle_report`, JSON
ready) and into text (:func:`format_cycle`). Records from before a field
existed simply lack it, and a kind this module does not know is still shown.
"""

from __future__ import annotations

import time
from typing import Any

from persistent.list import PersistentList
from persistent.mapping import PersistentMapping

from batos.core.errors import BatosError
from batos.core.refs import name_of
from batos.core.uvm import UvmObject


class UnknownCycle(BatosError):
    """No cycle, or more than one, has the id (prefix) asked for."""


def _plain(value: Any) -> Any:
    """Persistent containers and objects as JSON-ready data (objects by name)."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (dict, PersistentMapping)):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, PersistentList)):
        return [_plain(v) for v in value]
    if isinstance(value, UvmObject):
        return name_of(value)
    return repr(value)[:200]


def list_cycles(root: Any, limit: int = 20, state: str | None = None) -> list[dict[str, Any]]:
    """The newest cycles first, one row each."""
    cycles = sorted(root["orchestrator"].cycles.values(), key=lambda c: c.created_at, reverse=True)
    rows = []
    for cycle in cycles:
        if state is not None and str(cycle.state) != state.upper():
            continue
        outcome = cycle.outcome or {}
        rows.append({
            "id": cycle.cycle_id, "state": str(cycle.state), "selector": cycle.selector, "target": name_of(cycle.target),
            "attempts": cycle.attempt + 1, "candidates": sum(1 for a in cycle.artifacts if a["kind"] == "candidate"),
            "created_at": cycle.created_at, "seconds": round(cycle.updated_at - cycle.created_at, 1),
            "reason": str(outcome.get("reason", ""))[:200],
        })
        if len(rows) >= limit:
            break
    return rows


def find_cycle(root: Any, prefix: str) -> Any:
    cycles = root["orchestrator"].cycles
    matches = [cid for cid in cycles.keys() if cid.startswith(prefix)] if prefix else []
    if not matches:
        raise UnknownCycle(f"no cycle with id {prefix!r} (see `batos cycles list`)")
    if len(matches) > 1:
        raise UnknownCycle(f"cycle id {prefix!r} is ambiguous: {', '.join(sorted(matches)[:10])}")
    return cycles[matches[0]]


def cycle_report(root: Any, prefix: str) -> dict[str, Any]:
    """The whole story of one cycle, as plain data."""
    cycle = find_cycle(root, prefix)
    history = [dict(h) for h in cycle.history]
    previous = cycle.created_at
    for entry in history:
        entry["seconds"] = round(entry["at"] - previous, 2)
        previous = entry["at"]
    return {
        "id": cycle.cycle_id, "state": str(cycle.state), "selector": cycle.selector, "target": name_of(cycle.target),
        "args": _plain(list(cycle.args)), "kwargs": _plain(dict(cycle.kwargs)), "intent": cycle.intent,
        "created_at": cycle.created_at, "updated_at": cycle.updated_at, "restarts": cycle.restarts,
        "outcome": _plain(dict(cycle.outcome or {})), "history": _plain(history),
        "artifacts": [_plain(dict(a)) for a in cycle.artifacts],
    }


def format_cycle_list(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no cycles"
    lines = []
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["created_at"]))
        lines.append(f"{r['id']}  {r['state']:<12} {r['target']}.{r['selector']}  {when}  {r['seconds']:g}s  "
                     f"{r['candidates']} candidate(s)  {r['reason'][:80]}")
    return "\n".join(lines)


def _code(text: str, limit: int = 25) -> list[str]:
    lines = text.rstrip().splitlines()
    shown = [f"      | {line}" for line in lines[:limit]]
    return shown + ([f"      | ... ({len(lines) - limit} more lines)"] if len(lines) > limit else [])


def format_cycle(report: dict[str, Any]) -> str:
    """The report as text: header, then each artifact in order, then the outcome and timings."""
    call = ", ".join([repr(a) for a in report["args"]] + [f"{k}={v!r}" for k, v in report["kwargs"].items()])
    lines = [f"cycle {report['id']}  {report['state']}  {report['target']}.{report['selector']}({call})"]
    intent = report["intent"].strip().splitlines()
    lines += [f"  intent: {intent[0] if intent else '(none)'}"] + [f"          {line}" for line in intent[1:12]]
    for a in report["artifacts"]:
        kind = a.get("kind")
        if kind in ("brief",):
            continue
        if kind == "plan":
            lines.append(f"  plan ({a.get('persona')}, {a.get('model')}): queries {a.get('queries')}")
        elif kind == "context":
            found = [f"{s.get('owner')}.{s.get('selector')}" + (f" ({s['similarity']:.2f})" if "similarity" in s else "")
                     for s in a.get("snippets", [])]
            lines.append(f"  context: {', '.join(found) or 'nothing related'}")
        elif kind == "checks":
            lines.append(f"  checks written by {a.get('persona')} ({a.get('duration_s', 0):.1f}s):")
            for c in a.get("checks", []):
                lines.append(f"    {'dropped' if c.get('dropped') else 'kept   '} {c.get('text')}" + (f"  -- {c['dropped']}" if c.get("dropped") else ""))
        elif kind == "candidate":
            label = f"{a.get('attempt', 0) + 1}.{a.get('index', 0) + 1}"
            how = ", ".join(x for x in (a.get("strategy"), a.get("framing"), f"temperature {a['temperature']}" if a.get("temperature") is not None else None,
                                        f"seed {a['seed']}" if a.get("seed") is not None else None) if x)
            lines.append(f"  candidate {label} ({a.get('model')}{', ' + how if how else ''}, {a.get('duration_s', 0):.1f}s)")
            if a.get("duplicate_of"):
                lines.append(f"    repeats candidate {a['duplicate_of']}: not trialled")
            for repair in a.get("repairs") or []:
                lines.append(f"    repaired: {repair}")
            lines += _code(a.get("source") or a.get("text", ""))
        elif kind == "verdict":
            label = f"{a.get('attempt', 0) + 1}.{a.get('index', 0) + 1}"
            status = "chosen" if a.get("chosen") else ("met the examples" if a.get("passed_intent") else f"rejected ({a.get('failure') or 'failed'})")
            score = f", score {a['score']:g}" if a.get("score") is not None else ""
            lines.append(f"  verdict {label}: {status}{score}")
            for error in a.get("audit_errors") or []:
                lines.append(f"    audit: {error}")
            trial = a.get("trial")
            if trial:
                result = (f"refused on purpose: {trial['refused']}" if trial.get("refused") else f"returned {trial.get('value')}") \
                    if trial.get("ok") else f"failed: {trial.get('error')}"
                lines.append(f"    trial {trial.get('call', '')}: {result}" + (" (keeps state: called twice)" if trial.get("stateful") else ""))
                if trial.get("second_error"):
                    lines.append(f"    second call failed: {trial['second_error']}")
                for c in trial.get("checks", []):
                    mark = "ok  " if c.get("passed") else "FAIL"
                    lines.append(f"    {mark} [{c.get('source', 'intent')}] {c.get('call') or c.get('text')} -> expected {c.get('expected')}, got {c.get('got')}")
            elif a.get("feedback"):
                lines.append(f"    {a['feedback'].splitlines()[0]}")
        else:
            lines.append(f"  {kind}:")
            lines += [f"    {k}: {str(v)[:120]}" for k, v in a.items() if k not in ("kind", "at")]
    outcome = report["outcome"]
    if outcome:
        lines.append(f"  outcome: {outcome.get('state')}: {outcome.get('reason', '')}")
    timings = {}
    for entry in report["history"]:
        timings[entry["from"]] = timings.get(entry["from"], 0.0) + entry["seconds"]
    total = report["updated_at"] - report["created_at"]
    lines.append("  time: " + ", ".join(f"{state} {seconds:.1f}s" for state, seconds in timings.items()) + f"; total {total:.1f}s")
    return "\n".join(lines)
