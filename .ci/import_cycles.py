"""Fails when top-level modules of src/ import each other in a cycle (of any
length), reading `crate::<module>` paths. The module tree is the
architecture: storage below auth below the services below the transports,
and a cycle is how a lower layer starts to know a higher one."""
import collections
import os
import re
import sys

edges = collections.defaultdict(set)
for root, _, files in os.walk("src"):
    for name in files:
        if not name.endswith(".rs"):
            continue
        path = os.path.join(root, name)
        parts = path.split(os.sep)
        module = parts[1].removesuffix(".rs")
        if module in ("main", "lib"):
            continue
        with open(path, encoding="utf-8", errors="ignore") as f:
            for match in re.finditer(r"\bcrate::([a-z_][a-z0-9_]*)", f.read()):
                if match.group(1) != module:
                    edges[module].add(match.group(1))

cycles = []
state = {}
stack = []


def visit(module):
    state[module] = "open"
    stack.append(module)
    for other in sorted(edges.get(module, ())):
        if state.get(other) == "open":
            cycles.append(stack[stack.index(other):] + [other])
        elif other not in state:
            visit(other)
    stack.pop()
    state[module] = "done"


for module in sorted(edges):
    if module not in state:
        visit(module)

for cycle in cycles:
    print("import cycle: " + " -> ".join(cycle))
sys.exit(1 if cycles else 0)
