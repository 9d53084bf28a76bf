"""A Griffe extension: renders the docstrings' doctests as code blocks.

keras_lr's docstrings put their ``>>>`` examples flush with the text, under
an ``Example:`` line. Markdown would read those lines as a paragraph (and
``['a', 'b']`` as a link reference); this extension wraps each run of
doctest lines (prompts, continuations and expected output, up to the next
blank line) in a fenced ``pycon`` block before mkdocstrings renders it.
"""

from __future__ import annotations

import griffe


def fence_doctests(text: str) -> str:
    """Wraps every run of doctest lines of `text` in a ```pycon fence."""
    out: list[str] = []
    block: list[str] = []
    indent = ""
    for line in [*text.splitlines(), ""]:
        stripped = line.lstrip()
        if block and stripped:
            block.append(line[len(indent) :] if line.startswith(indent) else line)
            continue
        if block:
            out += [f"{indent}```pycon", *[indent + b for b in block], f"{indent}```"]
            block = []
        if stripped.startswith(">>>"):
            indent = line[: len(line) - len(stripped)]
            block = [stripped]
            continue
        out.append(line)
    return "\n".join(out[:-1] if out and out[-1] == "" else out)


class FenceDoctests(griffe.Extension):
    """Fences doctest examples in every docstring that has one."""

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        docstring = obj.docstring
        if docstring is not None and ">>>" in docstring.value:
            docstring.value = fence_doctests(docstring.value)
