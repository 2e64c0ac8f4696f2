"""Extraction: model output as it really comes, narrowed to the one method asked for.

Models wrap code in markdown fences, put prose around it, wrap the method in a
class or put its imports at the top; :func:`extract_method` yields exactly one
``def <selector>(self, ...)`` plus the imports it needs, or says why not.
"""

from __future__ import annotations

import ast
import re
import textwrap


class Rejected(Exception):
    """Model output that holds no single usable method; the message says why."""


_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_CODE_START = re.compile(r"^(?:def |async def |class |import |from |@)")


def code_chunks(text: str) -> list[str]:
    """Code blocks if the text has fences, else the text, trimmed to its code (shape repairs read them too)."""
    blocks = [body for lang, body in _FENCE.findall(text) if lang.lower() in ("", "python", "py", "python3")]
    if blocks:
        return blocks
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if _CODE_START.match(line.lstrip())]
    if not starts:
        return []  # prose only
    body = lines[starts[0] :]
    # Drop trailing prose: shrink from the end until the rest parses.
    for end in range(len(body), 0, -1):
        chunk = "\n".join(body[:end])
        try:
            ast.parse(chunk)
            return [chunk]
        except SyntaxError:
            continue
    return ["\n".join(body)]


def _first_param(func: ast.FunctionDef | ast.AsyncFunctionDef) -> str | None:
    params = func.args.posonlyargs + func.args.args
    return params[0].arg if params else None


def extract_method(text: str, selector: str | None = None) -> tuple[str, str]:
    """Return (selector, source) for the one method in *text*, or raise Rejected."""
    parse_errors: list[str] = []
    found: list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef, list[ast.stmt]]] = []
    for chunk in code_chunks(text):
        chunk = textwrap.dedent(chunk)
        try:
            tree = ast.parse(chunk)
        except SyntaxError as exc:
            parse_errors.append(f"Line {exc.lineno}: syntax error: {exc.msg}")
            continue
        imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        functions: list[ast.FunctionDef | ast.AsyncFunctionDef] = []
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                functions.append(node)
            elif isinstance(node, ast.ClassDef):
                functions.extend(n for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))
                imports.extend(n for n in node.body if isinstance(n, (ast.Import, ast.ImportFrom)))
        for func in functions:
            if (selector is None or func.name == selector) and _first_param(func) == "self":
                found.append((chunk, func, imports))
    if not found:
        if parse_errors:
            raise Rejected("; ".join(parse_errors))
        wanted = f"def {selector}(self, ...)" if selector else "a function whose first parameter is self"
        raise Rejected(f"no {wanted} found in the text")
    names = {func.name for _, func, _ in found}
    if len(found) > 1:
        raise Rejected(f"expected exactly one method, found {len(found)} ({', '.join(sorted(names))})")
    chunk, func, imports = found[0]
    lines = chunk.splitlines()
    start = (func.decorator_list[0].lineno if func.decorator_list else func.lineno) - 1
    body = textwrap.dedent("\n".join(lines[start : func.end_lineno]))
    header = "\n".join(ast.unparse(i) for i in imports)
    source = (header + "\n\n" if header else "") + body.rstrip() + "\n"
    return func.name, source
