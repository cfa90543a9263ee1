#!/usr/bin/env python3
"""Issue 20's measure: the share of code lines that validate or handle errors: lines of `if ...: raise` blocks, raise statements,
try/except handlers, and statements calling check_*; over code lines (docstrings/comments excluded).

    python tools/validation_share.py made_np/{masks,layers,heads,model,optim,sampling,backend}.py
"""
import ast, sys, io, tokenize
def code_lines(src):
    tree = ast.parse(src); doc = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)) and node.body \
           and isinstance(node.body[0], ast.Expr) and isinstance(getattr(node.body[0], 'value', None), ast.Constant) \
           and isinstance(node.body[0].value.value, str):
            doc.update(range(node.body[0].lineno, node.body[0].end_lineno + 1))
    lines = set()
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER):
            for l in range(tok.start[0], tok.end[0] + 1):
                if l not in doc: lines.add(l)
    return tree, lines
tot = val = 0
for f in sys.argv[1:]:
    src = open(f).read(); tree, lines = code_lines(src); v = set()
    for node in ast.walk(tree):
        span = None
        if isinstance(node, ast.If) and any(isinstance(b, ast.Raise) for b in node.body):
            span = (node.lineno, node.end_lineno)
        elif isinstance(node, ast.Raise) or isinstance(node, ast.ExceptHandler):
            span = (node.lineno, node.end_lineno)
        elif isinstance(node, ast.stmt) and any(isinstance(c, ast.Call) and isinstance(c.func, (ast.Name, ast.Attribute)) and
                 (getattr(c.func, 'id', None) or getattr(c.func, 'attr', '')).startswith(('check_', '_check')) for c in ast.walk(node)) \
                 and not isinstance(node, (ast.FunctionDef, ast.If, ast.For, ast.While, ast.With, ast.Try, ast.ClassDef)):
            span = (node.lineno, node.end_lineno)
        if span: v.update(l for l in range(span[0], span[1] + 1) if l in lines)
    print(f"{f:28s} {len(lines):5d} code {len(v):4d} validation {100*len(v)/max(1,len(lines)):5.1f}%")
    tot += len(lines); val += len(v)
print(f"{'TOTAL':28s} {tot:5d} code {val:4d} validation {100*val/tot:5.1f}%")
