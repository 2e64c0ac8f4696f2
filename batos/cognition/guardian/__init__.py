"""The guardian: static audit of generated methods before they may run.

Three stages, each collecting errors as "Line N: ..." so one report says
everything that is wrong:

1. **Extraction** (:mod:`~batos.cognition.guardian.extraction`) takes model
   output as it really comes and yields exactly one ``def <selector>(self, ...)``
   plus the imports it needs, or a reason why not.
2. **Safety policy** (:mod:`~batos.cognition.guardian.policy`), default-deny:
   a node type without a rule is refused. Imports from the sandbox's
   allow-list of pure standard library modules, which must not lead on to
   modules outside it; no dynamic code, no reflection (underscore names, frames,
   format templates, ``getattr`` passed around), nothing that runs outside the
   watched call, no use of the object model's own API, no rebinding ``self``.
3. **Persistence Covenant** (:mod:`~batos.cognition.guardian.covenant`), a
   path-sensitive data-flow check: every path that mutates ``self`` must set
   ``self._p_changed = True`` before it returns or falls off the end.

:func:`audit` runs all three; callers need nothing else from this package.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

from batos.cognition.guardian.covenant import Covenant
from batos.cognition.guardian.extraction import Rejected, extract_method
from batos.cognition.guardian.policy import SafetyPolicy


@dataclass
class AuditReport:
    selector: str | None
    source: str | None
    errors: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return not self.errors and self.source is not None

    def feedback(self) -> str:
        """The errors as the next prompt shows them to the model."""
        return "\n".join(self.errors)


def audit(text: str, selector: str | None = None) -> AuditReport:
    """Extract, then apply the safety policy and the covenant; never raises."""
    try:
        name, source = extract_method(text, selector)
    except Rejected as exc:
        return AuditReport(selector, None, [str(exc)])
    tree = ast.parse(source)
    policy = SafetyPolicy()
    policy.visit(tree)
    errors = list(policy.errors)
    func = next(n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name)
    if isinstance(func, ast.FunctionDef):  # async ones are already refused by the policy
        errors += Covenant().check(func)
    return AuditReport(name, source, errors)
