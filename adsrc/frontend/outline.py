"""Outlining a checkpointed loop: a kernel split at the loop it marks with ``adsrc.checkpointed``.

A kernel of the supported form

    def f(params):
        <prefix: assignments of names, such as n = len(b), and allocations such as r = np.zeros(n)>
        for it in adsrc.checkpointed(range(iters), snapshots=10):
            <body>
        <suffix, up to the return>

is split into kernels over the same parameters, which the rest of adsrc differentiates like any
kernel (see :mod:`adsrc.checkpointed_kernels` for how their adjoints are run):

    def f_loop_body(params, arrays[, it]):  <prefix> <body>    one step; ``it`` only if read
    def f_after_loop(params, arrays):       <prefix> <suffix>  on the arrays the loop leaves
    def f_before_loop(params):              <prefix> return arrays   (run by Python only)

where ``arrays`` are the arrays the prefix allocates (``np.zeros``, ``np.empty``,
``np.zeros_like``, ``np.empty_like``, ``np.copy(a)``, ``a.copy()``): ``f(params)`` does what
``arrays = f_before_loop(params)``, then ``f_loop_body(params, arrays, it)`` for ``it`` in
``range(iters)``, then ``f_after_loop(params, arrays)`` do.  The other prefix statements are
repeated in the step and after the loop rather than passed along: they only bind names, from
values the loop does not change, so each kernel recomputes them (cheaply).  An allocated array
is not: it must be the same array in every step, since a step may leave values in it for the
next one and for the code after the loop; so it is made once, before the loop, and passed to
the step and to the kernel after the loop like an argument (the step writes it: it is part of
the state the checkpoints copy; it only reads it: an input of every step).  Its initial values
are zeros, garbage or a copy of another array; only a copy has a derivative, the identity,
which :attr:`LoopSplit.copies` lists for the driver to apply.

A body that ends with ``if <test>: break`` (a loop run until a test holds, at most ``iters``
times) gives a step that ends instead with ``loop_ends = 0.0; if <test>: loop_ends = 1.0;
return loop_ends`` (:attr:`LoopSplit.until`): the driver ends the loop after a step that returns
1.0, as the ``break`` would.

That equivalence is what the checks here guard: every other form is refused with an error at the
user's line, never split into kernels that compute something else.  Values may leave one step
for the next, and leave the loop, only through arrays (the *state*, which the checkpoints copy):
a body that rebinds an argument or a prefix name, reads a name before assigning it, or a suffix
that reads a name the loop assigns, is refused, and so is a prefix that binds an allocated
array's name twice.  Two checks need the argument types and the arrays the body writes, so they
run once those are known (:func:`check_types`): the repeated prefix may not bind arrays (other
than by the allocations above) nor read elements of the state, and the body may update in place
(``v += ...``) only arrays.

The split works on the user's tree before the fence (which refuses the marker anywhere else);
the fence then runs on each derived kernel as on any other.
"""

import copy
from dataclasses import dataclass

import gast

from adsrc.analyses.effects import names_read
from adsrc.frontend.quoting import located, quote
from adsrc.frontend.source import docstring_statements
from adsrc.naming import free

OPTIONS = ("schedule", "snapshots", "max_tape_bytes")

_FORM = ("write 'for it in adsrc.checkpointed(range(n), snapshots=k):' with n an argument of "
         "the kernel or an integer constant")

_CARRIED = ("must be in an array, passed to the kernel or allocated before the loop, and "
            "updated in place")

_ALLOCATING = ("'name = np.zeros(...)', np.empty, np.zeros_like, np.empty_like, np.copy(a) or "
               "a.copy()")


@dataclass
class LoopSplit:
    """A kernel split at its checkpointed loop.

    ``step``/``tail``: the FunctionDefs of the loop body and of the rest (None when nothing
    follows the loop), with the user's locations; ``arrays``: the names of the arrays the prefix
    allocates, in order, which both take after the kernel's parameters; ``before``: the
    FunctionDef that runs the prefix and returns those arrays (None when there are none);
    ``copies``: ``(array, copied)`` for each of them that is a copy of another (an argument or
    an earlier one), in order; ``counter``: the step's last parameter, which receives the step
    number (None when the body does not read the loop variable); ``trips``: the range's
    argument, a parameter name or an int; ``options``: the marker's keywords (constants);
    ``returns``: whether the kernel returns a value; ``marker``: the ``adsrc.checkpointed(...)``
    call; ``prefix``: the statements repeated in the step and the tail (the allocations are
    not); ``updated``: the targets of ``v += ...`` in the body where v is an argument or a
    prefix name (in place if v is an array, else a value carried from one step to the next);
    ``until``: whether the body ends with ``if <test>: break``, whose test the step returns."""

    step: gast.FunctionDef
    tail: gast.FunctionDef | None
    arrays: list
    before: gast.FunctionDef | None
    copies: list
    counter: str | None
    trips: str | int
    options: dict
    returns: bool
    marker: gast.Call
    prefix: list
    updated: list
    until: bool = False


def marked_loops(tree, is_marker):
    """Every ``for`` loop of ``tree`` whose iterable is a call of the marker (``is_marker(call)``
    says whether a call is one)."""
    return [node for node in gast.walk(tree) if isinstance(node, gast.For)
            and isinstance(node.iter, gast.Call) and is_marker(node.iter)]


def split(source, is_marker, is_kernel_call, allocation):
    """The :class:`LoopSplit` of the kernel ``source`` (a KernelSource) at its marked loop.

    ``is_kernel_call(call)`` says whether a call is of a user kernel (which may write arrays);
    ``allocation(call)`` is the name of the NumPy allocation function a call names (``"zeros"``,
    ``"copy"``... as :data:`adsrc.frontend.intrinsics.ALLOCATIONS` spells them), or None.
    Raises UnsupportedError, located, for the forms that cannot be split."""
    body = source.tree.body[docstring_statements(source.tree.body):]
    loops = marked_loops(source.tree, is_marker)
    top = [loop for loop in loops if any(loop is stmt for stmt in body)]
    for loop in loops:
        if not any(loop is stmt for stmt in top):
            raise source.error(loop.iter, "a checkpointed loop must be a statement of the kernel "
                                          "itself, not nested in another loop or a branch")
    if len(top) > 1:
        first = source.location(top[0])[1]
        raise source.error(top[1].iter, f"a kernel may have one checkpointed loop; this is a "
                                        f"second one (the first is at line {first})")
    loop = top[0]
    position = next(k for k, stmt in enumerate(body) if stmt is loop)
    prefix, suffix = body[:position], body[position + 1:]
    params = [arg.id for arg in source.tree.args.args]
    trips, options = _marker(source, loop, params)
    counter = loop.target.id
    assigned_before = _check_prefix_form(source, prefix, is_kernel_call)
    allocations = _allocations(source, prefix, params, allocation)
    repeated = [stmt for stmt in prefix if not any(stmt is made for made, _, _ in allocations)]
    arrays = [target for _, target, _ in allocations]
    before = set(params) | assigned_before
    if counter in before:
        raise source.error(loop.target, f"the loop variable '{counter}' is also "
                                        f"{_what(counter, params)}: give it another name")
    stop = _stop_test(loop.body)
    body = loop.body[:-1] if stop is not None else loop.body
    tested = [gast.copy_location(gast.If(stop.test, [gast.Pass()], []), stop)] if stop else []
    updated = _check_body(source, body + tested, params, before, counter)
    in_loop = _assigned(loop.body) | {counter}
    _check_exposed(source, suffix, before, in_loop - before,
                   ", which the checkpointed loop assigns: only arrays, passed to the kernel or "
                   "allocated before the loop, carry values out of a checkpointed loop")
    reads_counter = counter in set().union(*(names_read(stmt) for stmt in loop.body))
    step = _kernel(source.tree, f"{source.name}_loop_body",
                   repeated + body + (_returning_the_test(source.tree, stop) if stop else []),
                   arrays + ([loop.target] if reads_counter else []))
    tail = (_kernel(source.tree, f"{source.name}_after_loop", repeated + suffix, arrays)
            if suffix else None)
    allocating = None
    if arrays:
        returned = gast.Tuple([gast.Name(array.id, gast.Load(), None, None)
                               for array in arrays], gast.Load())
        allocating = _kernel(source.tree, f"{source.name}_before_loop",
                             prefix + [gast.copy_location(gast.Return(returned), loop)], [])
    returns = bool(suffix) and isinstance(suffix[-1], gast.Return) \
        and suffix[-1].value is not None
    copies = [(target.id, copied) for _, target, copied in allocations if copied is not None]
    return LoopSplit(step, tail, [array.id for array in arrays], allocating, copies,
                     counter if reads_counter else None, trips, options, returns, loop.iter,
                     repeated, updated, stop is not None)


def _stop_test(body):
    """The statement ``if test: break`` that ends a checkpointed loop's body (a loop run until
    a test holds, at most n times), or None."""
    last = body[-1] if body else None
    if isinstance(last, gast.If) and not last.orelse and len(last.body) == 1 \
            and isinstance(last.body[0], gast.Break):
        return last
    return None


def _returning_the_test(tree, stop):
    """Statements that end the step kernel of a loop run until a test holds: it returns 1.0
    where the loop's ``if test: break`` would break, else 0.0 (the driver then ends the loop),
    in a name the kernel does not use; placed at the user's ``if``."""
    flag = free("loop_ends", {node.id for node in gast.walk(tree) if isinstance(node, gast.Name)})
    return located(quote("FLAG = 0.0\nif TEST:\n    FLAG = 1.0\nreturn FLAG", FLAG=flag,
                         TEST=stop.test), stop)


def check_types(source, loop_split, arrays, state):
    """The checks that need types: refuse a repeated prefix statement that binds or updates an
    array (each step would start from a new one, or update it again) or reads elements of an
    array the loop writes (each step would see other values than the kernel does), and a body
    that carries a scalar from one step to the next by ``v += ...``.  ``arrays``: the names
    that are arrays in the step kernel; ``state``: the names of the arrays the loop body
    writes, the allocated ones included."""
    params = [arg.id for arg in source.tree.args.args]
    for target in loop_split.updated:
        if target.id not in arrays:
            raise source.error(target, f"the checkpointed loop updates '{target.id}', "
                                       f"{_what(target.id, params)}: a value carried from one "
                                       f"step to the next {_CARRIED}")
    for stmt in loop_split.prefix:
        for target in _targets(stmt):
            if target.id in arrays:
                raise source.error(stmt, f"'{target.id}' is an array, bound or updated before a "
                                         "checkpointed loop by a statement that adsrc repeats "
                                         "in each step: before the loop, make a new array with "
                                         f"{_ALLOCATING} (adsrc makes it once and the loop "
                                         "carries it), and update it inside the loop")
        read = sorted(names_read(stmt, shapes=False) & set(state))
        if read:
            raise source.error(stmt, f"this statement before the checkpointed loop reads "
                                     f"'{read[0]}', which the loop writes: adsrc repeats it in "
                                     "each step, where it would see the values of that step; "
                                     "only its shape (len, .shape) may be read")


# the marker ---------------------------------------------------------------------------------------

def _marker(source, loop, params):
    """``(trips, options)`` of the marker ``adsrc.checkpointed(range(n), **options)``."""
    call = loop.iter
    if loop.orelse:
        raise source.error(loop, "'for ... else' is not supported")
    if not isinstance(loop.target, gast.Name):
        raise source.error(loop.target, "a checkpointed loop must bind a single name")
    if len(call.args) != 1:
        raise source.error(call, f"adsrc.checkpointed takes one range(n) in a kernel: {_FORM}")
    iterable = call.args[0]
    if not (isinstance(iterable, gast.Call) and isinstance(iterable.func, gast.Name)
            and iterable.func.id == "range" and not iterable.keywords):
        raise source.error(iterable, f"a checkpointed loop iterates over range(n): {_FORM}")
    if len(iterable.args) != 1:
        raise source.error(iterable, "a checkpointed loop iterates over range(n) with one "
                                     f"argument (the steps run from 0): {_FORM}")
    stop = iterable.args[0]
    if isinstance(stop, gast.Name) and stop.id in params:
        trips = stop.id
    elif isinstance(stop, gast.Constant) and type(stop.value) is int:
        trips = stop.value
    else:
        raise source.error(stop, "the number of steps of a checkpointed loop must be known "
                                 f"when the kernel is called: {_FORM}")
    options = {}
    for keyword in call.keywords:
        if keyword.arg not in OPTIONS:
            raise source.error(call, f"adsrc.checkpointed in a kernel takes the keywords "
                                     f"{', '.join(OPTIONS)}, not {keyword.arg or '**'}")
        if not isinstance(keyword.value, gast.Constant):
            raise source.error(keyword.value, f"{keyword.arg}= of a checkpointed loop must be "
                                              "a constant written in the kernel")
        options[keyword.arg] = keyword.value.value
    return trips, options


# the three parts ----------------------------------------------------------------------------------

def _targets(stmt):
    """The names an assignment of the prefix binds."""
    target = stmt.targets[0] if isinstance(stmt, gast.Assign) else stmt.target
    return target.elts if isinstance(target, gast.Tuple) else [target]


def _check_prefix_form(source, prefix, is_kernel_call):
    """The names the prefix binds, after checking it only binds names and calls no kernel."""
    bound = set()
    for stmt in prefix:
        if not (isinstance(stmt, (gast.Assign, gast.AugAssign)) and all(
                isinstance(target, gast.Name) for target in _targets(stmt))):
            raise source.error(stmt, "before a checkpointed loop a kernel may only assign names "
                                     "(like 'n = len(b)'): adsrc repeats these statements in "
                                     "each step and after the loop, so they must not write "
                                     "arrays; move this statement into the loop or after it")
        for node in gast.walk(stmt):
            if isinstance(node, gast.Call) and is_kernel_call(node):
                raise source.error(node, "a kernel called before a checkpointed loop could "
                                         "write arrays, and adsrc repeats these statements in "
                                         "each step: move the call into the loop or after it")
        bound |= {target.id for target in _targets(stmt)}
    return bound


def _allocations(source, prefix, params, allocation):
    """``(statement, target, copied)`` for each prefix statement that makes a new array
    (:func:`_allocated`), in order, after refusing an allocated name bound twice before the loop
    (adsrc makes the array once and passes it to each step; a second binding of its name, or an
    update of it, would be repeated in each step) and an allocation bound to an argument's name
    (which the step and the tail take as their own parameter)."""
    found, bound = [], {}
    for stmt in prefix:
        arrays = {target.id for _, target, _ in found}
        made = _allocated(stmt, allocation, set(params) | arrays)
        for target in _targets(stmt):
            if target.id in bound and (made is not None or target.id in arrays):
                raise source.error(stmt, f"'{target.id}' is bound here and already at line "
                                         f"{bound[target.id]}: an array allocated before a "
                                         "checkpointed loop is made once and carried by the "
                                         "loop, so its name must be bound once before the "
                                         "loop; update the array inside the loop")
            bound[target.id] = source.location(stmt)[1]
        if made is not None:
            target, copied = made
            if target.id in params:
                raise source.error(stmt, f"'{target.id}' is an argument of the kernel: give the "
                                         "array allocated before the checkpointed loop a name "
                                         "of its own")
            found.append((stmt, target, copied))
    return found


def _allocated(stmt, allocation, arrays):
    """``(target, copied)`` if ``stmt`` binds a name to a new array, with ``copied`` the name of
    the array it copies (``np.copy(a)``, ``a.copy()``, with ``a`` among ``arrays``) or None
    (np.zeros, np.empty, np.zeros_like, np.empty_like: values that are no argument's); else
    None."""
    if not (isinstance(stmt, gast.Assign) and isinstance(stmt.targets[0], gast.Name)
            and isinstance(stmt.value, gast.Call) and not stmt.value.keywords):
        return None
    target, call = stmt.targets[0], stmt.value
    if isinstance(call.func, gast.Attribute) and call.func.attr == "copy" and not call.args:
        copied = call.func.value
        return (target, copied.id) if isinstance(copied, gast.Name) \
            and copied.id in arrays else None
    kind = allocation(call)
    if kind == "copy":
        copied = call.args[0] if len(call.args) == 1 else None
        return (target, copied.id) if isinstance(copied, gast.Name) \
            and copied.id in arrays else None
    return None if kind is None else (target, None)


def _what(name, params):
    return "an argument of the kernel" if name in params else "a name assigned before the loop"


def _check_body(source, body, params, before, counter):
    """No jump out of the loop, no return, no name of ``before`` rebound, no value carried from
    one iteration to the next in a name.  Returns the targets of ``v += ...`` with v in
    ``before``, which :func:`check_types` checks."""
    updated = []
    for stmt in _statements(body, into_loops=False):
        if isinstance(stmt, (gast.Break, gast.Continue)):
            raise source.error(stmt, f"'{type(stmt).__name__.lower()}' in a checkpointed loop: "
                                     "its steps must be those of range(n), or end at an 'if "
                                     "<test>: break' that is the last statement of its body "
                                     f"(a loop run until a test holds); {_FORM}")
    for stmt in _statements(body, into_loops=True):
        if isinstance(stmt, gast.Return):
            raise source.error(stmt, "'return' inside a checkpointed loop is not supported")
        for target in _bound(stmt):
            if target.id in before and isinstance(stmt, gast.AugAssign):
                updated.append(target)
            elif target.id in before:
                raise source.error(target, f"the checkpointed loop assigns '{target.id}', "
                                           f"{_what(target.id, params)}: a value carried from "
                                           f"one step to the next {_CARRIED}")
    local = _assigned(body) - before
    _check_exposed(source, body, before | {counter}, local,
                   " before the loop body assigns it: a value carried from one step to the next "
                   + _CARRIED)
    return updated


def _statements(stmts, into_loops):
    """Every statement of a block, nested ones included (those of inner loops too if
    ``into_loops``)."""
    for stmt in stmts:
        yield stmt
        if isinstance(stmt, (gast.For, gast.While)) and not into_loops:
            continue
        for field in ("body", "orelse"):
            yield from _statements(getattr(stmt, field, []) or [], into_loops)


def _bound(stmt):
    """The Name nodes a statement binds (not its nested statements)."""
    if isinstance(stmt, gast.Assign):
        targets = [stmt.targets[0]]
    elif isinstance(stmt, gast.AugAssign):
        targets = [stmt.target]
    elif isinstance(stmt, gast.For):
        targets = [stmt.target]
    else:
        return []
    names = []
    for target in targets:
        names += target.elts if isinstance(target, gast.Tuple) else [target]
    return [name for name in names if isinstance(name, gast.Name)]


def _assigned(stmts):
    """The names a block binds anywhere."""
    return {name.id for stmt in _statements(stmts, into_loops=True) for name in _bound(stmt)}


def _check_exposed(source, stmts, defined, names, why):
    """Refuse a read of one of ``names`` that is not preceded, on every path through ``stmts``,
    by an assignment of it (``defined``: the names bound on entry)."""
    if not names:
        return
    exposed = []
    _definitely_assigned(stmts, set(defined), names, exposed)
    if exposed:
        raise source.error(exposed[0], f"'{exposed[0].id}' is read here{why}")


def _definitely_assigned(stmts, defined, names, exposed):
    """Walk a block in order, appending to ``exposed`` the reads of ``names`` not yet in
    ``defined``; returns the names bound on every path through the block.  A loop body may run
    zero times, so what it binds is not bound after it; a name bound in both branches of an
    ``if`` is."""
    defined = set(defined)

    def reads(node):
        exposed.extend(sub for sub in gast.walk(node) if isinstance(sub, gast.Name)
                       and isinstance(sub.ctx, gast.Load) and sub.id in names
                       and sub.id not in defined)

    for stmt in stmts:
        if isinstance(stmt, gast.For):
            reads(stmt.iter)
            _definitely_assigned(stmt.body, defined | {name.id for name in _bound(stmt)},
                                 names, exposed)
        elif isinstance(stmt, gast.While):
            reads(stmt.test)
            _definitely_assigned(stmt.body, defined, names, exposed)
        elif isinstance(stmt, gast.If):
            reads(stmt.test)
            defined |= (_definitely_assigned(stmt.body, defined, names, exposed)
                        & _definitely_assigned(stmt.orelse, defined, names, exposed))
        elif isinstance(stmt, (gast.Assign, gast.AugAssign)):
            reads(stmt.value)
            target = stmt.targets[0] if isinstance(stmt, gast.Assign) else stmt.target
            if isinstance(stmt, gast.AugAssign) and isinstance(target, gast.Name):
                if target.id in names and target.id not in defined:
                    exposed.append(target)          # 'v += ...' reads v
            elif not isinstance(target, (gast.Name, gast.Tuple)):
                reads(target)
            defined |= {name.id for name in _bound(stmt)}
        else:
            reads(stmt)
            defined |= {name.id for name in _bound(stmt)}
    return defined


def _kernel(tree, name, body, extra):
    """A FunctionDef over the parameters of ``tree`` and then the names of ``extra`` (Name
    nodes: the allocated arrays, the loop variable), with ``body``: copies, which keep the
    user's locations."""
    kernel = copy.copy(tree)
    kernel.name = name
    kernel.body = copy.deepcopy(body)
    kernel.args = copy.deepcopy(tree.args)
    for name_node in extra:
        parameter = gast.Name(name_node.id, gast.Param(), None, None)
        kernel.args.args.append(gast.copy_location(parameter, name_node))
    kernel.decorator_list = []
    return kernel
