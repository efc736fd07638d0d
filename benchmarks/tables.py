"""The one table printer of the benchmarks: aligned columns for a terminal, or markdown.

A benchmark run with ``--markdown`` prints its lines of context and then one markdown table, so
its whole output can sit between the measured markers of a doc page (``benchmarks/regenerate.py``).
"""


def print_table(header, rows, markdown=False):
    """Print ``rows`` (sequences of values, printed with str) under ``header``.

    Plain: right-aligned columns. markdown: a blank line, then a markdown table.
    """
    rows = [[str(v) for v in row] for row in rows]
    if markdown:
        print()
        print("| " + " | ".join(header) + " |")
        print("|" + "---:|" * len(header))
        for row in rows:
            print("| " + " | ".join(row) + " |")
        return
    widths = [max(len(v) for v in col) for col in zip(header, *rows)]
    for row in [list(header), *rows]:
        print(" ".join(f"{v:>{w}}" for v, w in zip(row, widths)))
