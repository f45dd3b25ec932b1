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
transformations already differentiate.  A helper returning several values (``return s, 0.0``)
stores each in a result of its own (``_result0``, ``_result1``) and ends with
``return _result0, _result1``, which its callers unpack as they unpack any such helper.
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
    count, several = _values_returned(returns, error)
    if count and not isinstance(last, gast.Return):
        raise error(last, "a kernel that returns a value from inside a loop or branch must end "
                          "with a 'return value' statement too")
    results = [f"{RESULT}{index}" for index in range(count)] if several \
        else [RESULT][:count]
    body, _ = _block(tree.body, False, results)
    for node in gast.walk(gast.Module(body, [])):
        if isinstance(node, gast.Assign) and isinstance(node.value, gast.Name) \
                and isinstance(node.targets[0], gast.Name) and node.targets[0].id in results:
            node.adsrc_returned_early = (tree.name, node.value.id)     # for lower_arrays
    tree.body = located(quote(f"{FLAG} = 0"), returns[0]) + body
    if count:
        tree.body += located(quote(f"return {', '.join(results)}"
                                   + ("," if several and count == 1 else "")), last)
    return {FLAG, *results}


def _values_returned(returns, error):
    """(how many values every ``return`` gives, whether as a tuple): one answer for all, as
    the callers unpack them one way; 0 values for a bare ``return``."""
    for node in returns:
        if isinstance(node.value, gast.Tuple) and any(
                isinstance(part, (gast.Starred, gast.Tuple, gast.List))
                for part in node.value.elts):
            raise error(node, "a function returns several values as 'return a, b': each a "
                              "name or an element, with no nesting and no '*'")
    in_order = sorted(returns, key=lambda node: (node.lineno, node.col_offset))
    forms = [_form(node) for node in in_order]
    if any(count == 0 for count, _ in forms) and any(count for count, _ in forms):
        raise error(in_order[0], "a kernel returns a value on every path or on none: "
                                 "'return' and 'return value' are mixed")
    for node, form in zip(in_order, forms):
        if form != forms[0]:
            raise error(node, f"this 'return' gives {_described(form)}, an earlier one "
                              f"{_described(forms[0])}: a function returns the same number "
                              "of values on every path")
    return forms[0]


def _form(node):
    if node.value is None:
        return 0, False
    if isinstance(node.value, gast.Tuple):
        return len(node.value.elts), True
    return 1, False


def _described(form):
    count, several = form
    return f"{count} values" if several else "one value"


def _block(stmts, in_loop, results):
    """(statements, whether they may return).  In a loop body, a return inside an ``if`` has
    already left the loop (its break, or the break after an inner loop in that ``if``); only
    after an inner loop that may have returned does the body break itself."""
    out, returns = [], False
    for position, stmt in enumerate(stmts):
        rewritten, may_return = _statement(stmt, in_loop, results)
        out += rewritten
        returns = returns or may_return
        if isinstance(stmt, gast.Return):
            return out, True                    # what follows a return never runs
        if may_return and (not in_loop or isinstance(stmt, (gast.For, gast.While))):
            rest, _ = _block(stmts[position + 1:], in_loop, results)
            if in_loop:
                out += located(quote(f"if {FLAG} == 1:\n    break"), stmt) + rest
            elif rest:
                guard = located(quote(f"if {FLAG} == 0:\n    pass"), stmt)
                guard[0].body = rest
                guard[0].adsrc_after_return = stmt      # for lower_arrays' refusals
                out += guard
            return out, True
    return out, returns


def _statement(stmt, in_loop, results):
    if isinstance(stmt, gast.Return):
        ending = located(quote(f"{FLAG} = 1" + ("\nbreak" if in_loop else "")), stmt)
        if stmt.value is None:
            return ending, True
        values = stmt.value.elts if isinstance(stmt.value, gast.Tuple) else [stmt.value]
        stores = [gast.copy_location(gast.Assign(
            [gast.copy_location(gast.Name(result, gast.Store(), None, None), stmt)], value,
            None), stmt) for result, value in zip(results, values)]
        return stores + ending, True
    if isinstance(stmt, gast.If):
        stmt.body, body_returns = _block(stmt.body, in_loop, results)
        stmt.orelse, orelse_returns = _block(stmt.orelse, in_loop, results)
        return [stmt], body_returns or orelse_returns
    if isinstance(stmt, (gast.For, gast.While)):
        stmt.body, body_returns = _block(stmt.body, True, results)
        return [stmt], body_returns
    return [stmt], False
