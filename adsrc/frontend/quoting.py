"""Building trees from code templates, and printing them.

Generated code is written as small Python templates, so a rule reads like the code it produces:
``quote("X_BAR[I] += G * W", X_BAR=..., I=..., G=..., W=...)``.  Upper-case names in a template
are placeholders, replaced by (copies of) the given nodes or by names when given strings.
"""

import ast
import copy

import gast

COMMENT_MARK = "__adsrc_comment__ "


def name(identifier, store=False):
    return gast.Name(identifier, gast.Store() if store else gast.Load(), None, None)


def const(value):
    return gast.Constant(value=value, kind=None)


def full_slice(ndim):
    """The index of every element of an array of ``ndim`` dimensions: ``:`` or ``:, :``."""
    slices = [gast.Slice(None, None, None) for _ in range(ndim)]
    return slices[0] if ndim == 1 else gast.Tuple(slices, gast.Load())


def located(stmts, origin):
    """Generated ``stmts``, every node placed at ``origin`` (in place): errors about them point at
    the user's statement they were made from."""
    for stmt in stmts:
        for node in gast.walk(stmt):
            gast.copy_location(node, origin)
    return stmts


def with_ctx(node, ctx):
    """A copy of an expression usable in ``ctx`` (Load or Store) position."""
    node = copy.deepcopy(node)
    if isinstance(node, (gast.Name, gast.Subscript, gast.Attribute, gast.Tuple)):
        node.ctx = ctx
    return node


class _Substitute(gast.NodeTransformer):
    def __init__(self, subs):
        self.subs = subs

    def visit_Name(self, node):
        if node.id not in self.subs:
            return node
        value = self.subs[node.id]
        if isinstance(value, str):
            return gast.Name(value, node.ctx, None, None)
        return with_ctx(value, node.ctx)


def substitute(tree, subs):
    """``tree``, changed in place, with the names ``subs`` maps replaced: by names (strings) or
    by copies of nodes."""
    return _Substitute(subs).visit(tree)


def quote(template, **subs):
    """Statements parsed from ``template`` with placeholders substituted."""
    return substitute(gast.parse(template), subs).body


def quote_expr(template, **subs):
    """One expression parsed from ``template`` with placeholders substituted."""
    return quote(template, **subs)[0].value


def comment(text):
    """A statement that the backends print as ``# text``."""
    return gast.Expr(value=const(COMMENT_MARK + text))


def is_comment(stmt):
    return (isinstance(stmt, gast.Expr) and isinstance(stmt.value, gast.Constant)
            and isinstance(stmt.value.value, str) and stmt.value.value.startswith(COMMENT_MARK))


def has_code(stmts):
    """Whether ``stmts`` hold a statement that is not a comment."""
    return any(not is_comment(stmt) for stmt in stmts)


def with_quoted_lines(blocks):
    """The statements of ``blocks``, pairs (the user's line as quoted, the statements generated
    for it), each block after a comment quoting its line: once for consecutive blocks of one
    line, and none for a block without code.  The generated code then reads beside the kernel,
    and an error raised in it (a failed build, an index outside its array) is traced back to
    the user's line (:func:`adsrc.backends.cython.quoted_lines`)."""
    out, quoted = [], None
    for line, block in blocks:
        if line != quoted and has_code(block):
            out.append(comment(line))
            quoted = line
        out.extend(block)
    return out


def unparse(node):
    """Source text of an expression, a statement or a list of statements.  (gast_to_ast builds
    new nodes, sharing only the immutable leaves, so ``node`` needs no copy.)"""
    nodes = node if isinstance(node, list) else [node]
    converted = [gast.gast_to_ast(item) for item in nodes]
    if all(isinstance(item, ast.expr) for item in converted):
        converted = [ast.Expr(value=item) for item in converted]
    module = ast.fix_missing_locations(ast.Module(body=converted, type_ignores=[]))
    return ast.unparse(module).strip()


def new_axis(part):
    """Whether a part of an index is ``None``, a new axis (the fence spells ``np.newaxis`` so)."""
    return isinstance(part, gast.Constant) and part.value is None


def int_literal(node):
    """The value of an integer literal such as ``3`` or ``-1``, else None."""
    sign = 1
    if isinstance(node, gast.UnaryOp) and isinstance(node.op, gast.USub):
        sign, node = -1, node.operand
    if isinstance(node, gast.Constant) and isinstance(node.value, int) \
            and not isinstance(node.value, bool):
        return sign * node.value
    return None


def same(a, b):
    """Structural equality of two expressions (ignoring contexts and locations)."""
    return gast.dump(with_ctx(a, gast.Load())) == gast.dump(with_ctx(b, gast.Load()))
