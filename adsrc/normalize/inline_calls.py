"""Calls of user functions that return an array or several values, replaced by their bodies.

A kernel that adsrc specialises returns a scalar at most: its adjoint sweep is seeded with one
float.  A helper that returns an array, ``def residual(A, x, b): return b - A @ x``, or one that
allocates an array, fills it in a loop and returns it, has no such sweep of its own, and neither
has one returning several values, ``return r, np.dot(r, r)``.  What the
call means in Python is what the body computes from the arguments, so the caller gets the body,
where the rest of the pipeline sees statements like its own (local arrays, element loops,
whole-array statements) and differentiates them in place:

* a parameter the body never binds again is replaced by its argument when that is a name or a
  constant (the same array, written in place through either name, as in Python), else by a new
  local bound to the argument before the body (evaluated once, in order); ``v *= a`` binds a
  float again, and writes an array in place;
* a parameter the body binds again, and every other local of the body, gets a new name, which
  the caller does not use (``y_residual``); the parameter is bound to its argument before the
  body, to a copy of an array that the body writes no element of (the same values, and adsrc,
  which gives each name an array of its own, need not check that neither is written in place);
* the body's return value takes the call's place; in ``r = residual(A, x, b)`` the body's array
  becomes ``r`` when the body does not read ``r`` and ``r`` is not a parameter, else the body's
  last statement assigns ``r`` when it computes the value, else ``r`` gets a copy of the body's
  array;
* several values are unpacked by the call's statement, ``r, rr = residual_and_norm(A, x, b)``
  (type inference refuses any other use): a value the body computes into a local of its own
  goes into the target's name when nothing else reads that name, the others are stored after
  the body, in order, as Python stores them once it has computed every value.

Every statement of the body is placed at the call's line, so that an error in it names the call.
The calls in the body of user functions are the caller's to make (their names join the
caller's): inlining repeats, with types inferred again, until no call returns an array or several
values (a function that calls itself, directly or not, may return a scalar only).
"""

import copy
from dataclasses import dataclass

import gast

from adsrc.analyses.types import FLOAT, Values
from adsrc.frontend.quoting import located, name, substitute
from adsrc.naming import free
from adsrc.normalize.desugar import check_evaluation_order


class InlineCalls:
    """Inlines, in one kernel's tree, every call of a user function returning an array or
    several values.

    ``program``: the :class:`~adsrc.pipeline.Program` (each function's fenced tree, callees and
    written parameters); ``user_functions``: the kernel's called name -> function, to which the
    names the inlined bodies call are added; ``infer(tree)``: a new ``TypeInference`` of a
    tree."""

    def __init__(self, source, program, user_functions, namer, infer):
        self.source = source
        self.program = program
        self.user_functions = user_functions
        self.namer = namer
        self.infer = infer
        self._calls = {}                # id of a call this round inlines -> _Typed
        self._taken = set()             # every name of the tree, and every name given

    def run(self, tree):
        """Inlines until no call returns an array or several values: each round inlines one
        level of calls (such a function cannot call itself, :meth:`Program.return_type`)."""
        while True:
            self._calls = self._calls_to_inline(tree)
            if not self._calls:
                return tree
            self._taken = {node.id for node in gast.walk(tree) if isinstance(node, gast.Name)}
            tree.body = self._block(tree.body)

    def _calls_to_inline(self, tree):
        """``{id(call): its types}`` of the user calls in ``tree`` that return arrays or
        several values.  Types are inferred on a copy: inference rewrites a few statements,
        which the normalisations before it (:mod:`adsrc.normalize.rebound_arguments`) must see
        as the user wrote them."""
        calls = [node for node in gast.walk(tree) if self._is_user_call(node)]
        if not calls:
            return {}
        for number, call in enumerate(calls):
            call.adsrc_call_number = number
        typed = copy.deepcopy(tree)
        typer = self.infer(typed)
        typer.run()
        found = {}
        for node in gast.walk(typed):
            if not self._is_user_call(node):
                continue
            # typer.expr refuses a call of several values its statement does not unpack;
            # typer.run has refused those already, and this one may be in a tuple's statement
            node.adsrc_unpacked = True
            returned = typer.expr(node) or FLOAT
            if returned.is_array or isinstance(returned, Values):
                found[id(calls[node.adsrc_call_number])] = _Typed(
                    [typer.expr(arg) or FLOAT for arg in node.args], returned)
        return found

    def _is_user_call(self, node):
        return isinstance(node, gast.Call) and isinstance(node.func, gast.Name) \
            and node.func.id in self.user_functions

    # statements --------------------------------------------------------------------------------

    def _block(self, stmts):
        return [new for stmt in stmts for new in self._statement(stmt)]

    def _statement(self, stmt):
        before = []
        if isinstance(stmt, gast.Assign) and id(stmt.value) in self._calls:
            if isinstance(stmt.targets[0], gast.Tuple):
                return self._unpacked_call(stmt)
            if isinstance(stmt.targets[0], gast.Name):
                return self._assigned_call(stmt)
        if isinstance(stmt, gast.Expr) and id(stmt.value) in self._calls:
            stmt.value.args = [self._expression(arg, before, stmt) for arg in stmt.value.args]
            return before + self._body(stmt.value)[0]       # the values are not used
        if isinstance(stmt, (gast.Assign, gast.AugAssign, gast.Expr, gast.Return)):
            if stmt.value is not None:
                stmt.value = self._expression(stmt.value, before, stmt)
            if isinstance(stmt, gast.Assign):
                stmt.targets = [self._expression(target, before, stmt)
                                for target in stmt.targets]
            elif isinstance(stmt, gast.AugAssign):
                stmt.target = self._expression(stmt.target, before, stmt)
            if isinstance(stmt, gast.Expr) and isinstance(stmt.value, gast.Name):
                return before           # the call's value was not used
        elif isinstance(stmt, gast.If):
            stmt.test = self._expression(stmt.test, before, stmt)
            stmt.body = self._block(stmt.body)
            stmt.orelse = self._block(stmt.orelse)
        elif isinstance(stmt, gast.For):
            stmt.iter = self._expression(stmt.iter, before, stmt)
            stmt.body = self._block(stmt.body)
        elif isinstance(stmt, gast.While):
            self._refuse_inside(stmt.test, "in a 'while' condition, which Python evaluates "
                                           "again before each trip")
            stmt.body = self._block(stmt.body)
        return before + [stmt]

    def _assigned_call(self, stmt):
        """``r = f(...)``: the body's value goes into ``r`` (see the module's docstring)."""
        target, call = stmt.targets[0], stmt.value
        before = []
        call.args = [self._expression(arg, before, stmt) for arg in call.args]
        body, (value,), own = self._body(call)
        if value.id not in own:                 # an argument, returned: Python's alias
            stmt.value = value
            return before + body + [stmt]
        if target.id not in _names(body) and target.id not in self.source.params:
            # (an argument's name is left to name the caller's array until it is bound)
            return before + [substitute(statement, {value.id: target.id}) for statement in body]
        if body and _assigns(body[-1], value.id) and value.id not in _names(body[:-1]):
            body[-1].targets = [gast.copy_location(name(target.id, store=True), target)]
            return before + body
        stmt.value = located([_copy_of(value)], call)[0]
        return before + body + [stmt]

    def _unpacked_call(self, stmt):
        """``a, b = f(...)``: a value the body computes into a local of its own becomes the
        target's when nothing else reads that name (as in :meth:`_assigned_call`); the others
        are stored after the body, in order, each value read before a store binds its name
        again (Python computes every value before it stores any)."""
        targets, call = stmt.targets[0].elts, stmt.value
        before = []
        call.args = [self._expression(arg, before, stmt) for arg in call.args]
        body, values, own = self._body(call)
        kinds = self._calls[id(call)].returned.types
        names = [value.id for value in values]
        for value, kind in zip(values, kinds):
            if kind.is_array and names.count(value.id) > 1:
                raise self.source.error(call, f"'{call.func.id}' returns one array as two of "
                                              "its values, which makes two names for one "
                                              "array: return it once")
        read = _names(body) | set(names) | set(self.source.params)
        renaming, stores = {}, []
        for target, value, kind in zip(targets, values, kinds):
            if isinstance(target, gast.Name) and value.id in own and target.id not in read:
                renaming[value.id] = target.id
                read.add(target.id)             # a name given twice is stored the second time
            else:
                # a name given the body's array gets a copy, as in _assigned_call; elements
                # given it copy its values
                copied = kind.is_array and value.id in own and isinstance(target, gast.Name)
                stores.append((target, _copy_of(value) if copied else value))
        body = [substitute(statement, renaming) for statement in body]
        held = []
        if _binds_before_read(stores):         # 'a, b = swapped(a, b)': as the fence's swap
            for position, (target, value) in enumerate(stores):
                temporary = self._new_name("value", call.func.id)
                held.append(_assignment(temporary, value))
                held[-1].adsrc_tuple_value = True   # a local array's values
                stores[position] = (target, name(temporary))
        stored = [gast.Assign(targets=[target], value=value, type_comment=None)
                  for target, value in stores]
        return before + body + located(held + stored, stmt)

    # expressions -------------------------------------------------------------------------------

    def _expression(self, node, before, stmt):
        """``node`` with each call returning an array replaced by the name of its value, the
        bodies appended to ``before`` in the order Python evaluates the calls."""
        if isinstance(node, gast.IfExp) and not getattr(node, "adsrc_elementwise", False):
            for branch in (node.body, node.orelse):
                self._refuse_inside(branch, "only when its branch of 'a if c else b' is chosen")
        if isinstance(node, gast.BoolOp):
            for value in node.values[1:]:
                self._refuse_inside(value, "only if the operands of 'and'/'or' before it "
                                           "allow it")
        for field, value in gast.iter_fields(node):
            if isinstance(value, gast.AST):
                setattr(node, field, self._expression(value, before, stmt))
            elif isinstance(value, list):
                setattr(node, field, [self._expression(item, before, stmt)
                                      if isinstance(item, gast.AST) else item
                                      for item in value])
        if id(node) not in self._calls:
            return node
        callee = self.user_functions[node.func.id]
        check_evaluation_order(self.source, node, stmt, self.program.written_params(callee),
                               self._calls[id(node)].arguments)
        body, (value,), _ = self._body(node)
        before.extend(body)
        return value

    def _refuse_inside(self, node, when):
        for sub in gast.walk(node):
            if id(sub) in self._calls:
                raise self.source.error(sub, f"Python evaluates this call {when}, but adsrc "
                                             "computes the array a function returns before "
                                             "its statement: compute it into a variable first")

    # the body ----------------------------------------------------------------------------------

    def _body(self, call):
        """The statements of the called function's body, renamed for the caller and placed at
        the call, the names of the values it returns, and the names given to its locals."""
        fn = self.user_functions[call.func.id]
        info = self.program.info(fn)
        tree = copy.deepcopy(info.tree)
        if len(tree.args.args) != len(call.args):
            raise self.source.error(call, f"'{call.func.id}' takes {len(tree.args.args)} "
                                          f"arguments, {len(call.args)} given")
        for called, function in info.callees.items():
            if self.user_functions.setdefault(called, function) is not function:
                raise self.source.error(call, f"'{call.func.id}' calls '{called}', which is "
                                              "another function here: adsrc inlines "
                                              f"'{call.func.id}' here, where '{called}' must "
                                              "name the same function")
        renaming, body = self._parameters(call, fn, tree)
        own = {new for new in renaming.values() if isinstance(new, str)}
        stored = {node.id for node in gast.walk(tree)
                  if isinstance(node, gast.Name) and isinstance(node.ctx, gast.Store)}
        for local in sorted(stored - set(renaming)):
            renaming[local] = self._new_name(local, fn.__name__)
            own.add(renaming[local])
        *statements, returned = tree.body
        body += [substitute(stmt, renaming) for stmt in statements]
        returned = substitute(returned.value, renaming)
        values = []
        for value in returned.elts if isinstance(returned, gast.Tuple) else [returned]:
            if not isinstance(value, gast.Name):
                result = self._new_name("value", fn.__name__)
                own.add(result)
                body.append(_assignment(result, value))
                value = name(result)
            values.append(value)
        return located(body, call), located(values, call), own

    def _parameters(self, call, fn, tree):
        """What each parameter of ``fn`` becomes: its argument (a node) or a new local's name
        (a string), and the assignments binding the new locals to their arguments."""
        augmented = {id(node.target): node.target.id for node in gast.walk(tree)
                     if isinstance(node, gast.AugAssign) and isinstance(node.target, gast.Name)}
        bound = {node.id for node in gast.walk(tree) if isinstance(node, gast.Name)
                 and isinstance(node.ctx, gast.Store) and id(node) not in augmented}
        written = self.program.written_params(fn)
        renaming, bindings = {}, []
        for position, (param, arg, kind) in enumerate(zip(
                [arg.id for arg in tree.args.args], call.args, self._calls[id(call)].arguments)):
            # 'v *= a' binds a float again, and writes an array in place
            rebound = param in bound or (param in augmented.values() and not kind.is_array)
            if not rebound and isinstance(arg, (gast.Name, gast.Constant)):
                renaming[param] = arg
                continue
            if isinstance(arg, gast.Name) and kind.is_array and position not in written:
                arg = _copy_of(arg)     # its values: the body binds the name again, writes none
            renaming[param] = self._new_name(param, fn.__name__)
            bindings.append(_assignment(renaming[param], arg))
        return renaming, bindings

    def _new_name(self, local, function):
        """A name for a local of ``function`` inlined here: ``y_residual``, or a generated
        name's own kind (``_residual0_returned``)."""
        if local.startswith("_"):
            chosen = self.namer.fresh(function) + local
        else:
            base = f"{local}_{function}"
            if base.endswith(("_bar", "_dot")):     # an adjoint's or a tangent's name
                base += "_value"
            chosen = free(base, self._taken)
        self._taken.add(chosen)
        return chosen


@dataclass
class _Typed:
    """The types of a call that is inlined: its arguments', and what it returns."""
    arguments: list
    returned: object


def _binds_before_read(stores):
    """Whether a store of ``(target, value)`` pairs, made in order, binds a name that a later
    one's value reads."""
    bound = set()
    for target, value in stores:
        if any(isinstance(node, gast.Name) and node.id in bound for node in gast.walk(value)):
            return True
        if isinstance(target, gast.Name):
            bound.add(target.id)
    return False


def _names(statements):
    return {node.id for statement in statements for node in gast.walk(statement)
            if isinstance(node, gast.Name)}


def _assignment(target, value):
    return gast.Assign(targets=[name(target, store=True)], value=value, type_comment=None)


def _copy_of(array):
    return gast.Call(func=gast.Attribute(name("np"), "copy", gast.Load()), args=[array],
                     keywords=[])


def _assigns(statement, local):
    return isinstance(statement, gast.Assign) and isinstance(statement.targets[0], gast.Name) \
        and statement.targets[0].id == local
