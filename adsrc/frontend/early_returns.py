"""Early returns, rewritten as a flag, breaks and guards (the fence's first step).

The rest of adsrc handles one ``return``, the last statement of a kernel.  A kernel that returns
from inside a loop or a branch (``if r < tol: return r``) is rewritten into that form::

    for it in range(n):                 _returned = 0
        ...                             for it in range(n):
        if r < tol:                         ...
            return r            ->          if r < tol:
    x[0] = r                                    _result = r
    return 2.0 * r                              _returned = 1
                                                break
                                        if _returned == 0:
                                            x[0] = r
                                            _result = 2.0 * r
                                            _returned = 1
                                        return _result

A return sets the flag, stores its value and breaks out of its loop; after an inner loop that
may have returned, the enclosing loop's body breaks too (``if _returned == 1: break``), and
outside loops the statements after one that may have returned run only if nothing returned.
The breaks and guards are plain control flow on an integer, which the analyses and
transformations already differentiate.
"""

import gast

from adsrc.frontend.quoting import located, quote

FLAG = "_returned"
RESULT = "_result"


def rewrite(tree, error):
    """Rewrite ``tree`` (a kernel's FunctionDef) in place when it returns early; returns the
    names it introduced (none when it had nothing to rewrite).  ``error(node, message)`` makes
    the exception for a kernel it cannot rewrite."""
    returns = [node for node in gast.walk(tree) if isinstance(node, gast.Return)]
    last = tree.body[-1] if tree.body else None
    if all(node is last for node in returns):
        return set()
    valued = {node.value is not None for node in returns}
    if len(valued) > 1:
        raise error(returns[0], "a kernel returns a value on every path or on none: "
                                "'return' and 'return value' are mixed")
    has_value = valued.pop()
    for node in sorted(returns, key=lambda node: (node is last, node.lineno)):
        if isinstance(node.value, gast.Tuple):
            raise error(node, "a function returning several values ('return a, b') returns "
                              "only in its last statement: assign them to names in the loop "
                              "or branch, and return those names at the end")
    if has_value and not isinstance(last, gast.Return):
        raise error(last, "a kernel that returns a value from inside a loop or branch must end "
                          "with a 'return value' statement too")
    body, _ = _block(tree.body, in_loop=False)
    tree.body = located(quote(f"{FLAG} = 0"), returns[0]) + body
    if has_value:
        tree.body += located(quote(f"return {RESULT}"), last)
    return {FLAG, RESULT} if has_value else {FLAG}


def _block(stmts, in_loop):
    """(statements, whether they may return).  In a loop body, a return inside an ``if`` has
    already left the loop (its break, or the break after an inner loop in that ``if``); only
    after an inner loop that may have returned does the body break itself."""
    out, returns = [], False
    for position, stmt in enumerate(stmts):
        rewritten, may_return = _statement(stmt, in_loop)
        out += rewritten
        returns = returns or may_return
        if isinstance(stmt, gast.Return):
            return out, True                    # what follows a return never runs
        if may_return and (not in_loop or isinstance(stmt, (gast.For, gast.While))):
            rest, _ = _block(stmts[position + 1:], in_loop)
            if in_loop:
                out += located(quote(f"if {FLAG} == 1:\n    break"), stmt) + rest
            elif rest:
                guard = located(quote(f"if {FLAG} == 0:\n    pass"), stmt)
                guard[0].body = rest
                guard[0].adsrc_after_return = stmt      # for lower_arrays' refusals
                out += guard
            return out, True
    return out, returns


def _statement(stmt, in_loop):
    if isinstance(stmt, gast.Return):
        ending = located(quote(f"{FLAG} = 1" + ("\nbreak" if in_loop else "")), stmt)
        if stmt.value is None:
            return ending, True
        target = gast.copy_location(gast.Name(RESULT, gast.Store(), None, None), stmt)
        store = gast.copy_location(gast.Assign([target], stmt.value, None), stmt)
        return [store] + ending, True
    if isinstance(stmt, gast.If):
        stmt.body, body_returns = _block(stmt.body, in_loop)
        stmt.orelse, orelse_returns = _block(stmt.orelse, in_loop)
        return [stmt], body_returns or orelse_returns
    if isinstance(stmt, (gast.For, gast.While)):
        stmt.body, body_returns = _block(stmt.body, in_loop=True)
        return [stmt], body_returns
    return [stmt], False
