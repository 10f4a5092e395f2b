"""The error tree drawn in service/errors.py's docstring is the tree the classes form: every
drawn edge is a real base class, and every error of the service under the root is drawn."""

from __future__ import annotations

import importlib
import pkgutil
import re

import service
import service.errors
from service.errors import NotifierError

# "  |  + PolicyError                    service.policy.config: the policy file"
_NODE = re.compile(r"^(?P<indent>[ |]*)[*x+\-.] (?P<name>[A-Za-z]+)\s+(?P<module>service[\w.]*)")


def drawn_tree() -> list[tuple[type[BaseException], type[BaseException] | None]]:
    """(class, drawn parent) for every node of the drawing, parents before children."""
    doc = service.errors.__doc__ or ""
    stack: list[tuple[int, type[BaseException]]] = []
    edges: list[tuple[type[BaseException], type[BaseException] | None]] = []
    for line in doc.splitlines():
        node = _NODE.match(line)
        if node is None:
            continue
        depth = len(node["indent"])
        cls = getattr(importlib.import_module(node["module"]), node["name"])
        while stack and stack[-1][0] >= depth:
            stack.pop()
        edges.append((cls, stack[-1][1] if stack else None))
        stack.append((depth, cls))
    return edges


def every_service_module() -> None:
    for info in pkgutil.walk_packages(service.__path__, "service."):
        if info.name == "service.__main__" or ".migrations" in info.name:
            continue
        importlib.import_module(info.name)


def subclasses(root: type[BaseException]) -> set[type[BaseException]]:
    found: set[type[BaseException]] = set()
    pending = [root]
    while pending:
        for sub in pending.pop().__subclasses__():
            if sub not in found:
                found.add(sub)
                pending.append(sub)
    return found


def test_every_drawn_edge_is_a_base_class() -> None:
    """Each class in the drawing names its drawn parent among its direct bases; the root is
    NotifierError and the drawing is not empty."""
    edges = drawn_tree()
    assert edges[0] == (NotifierError, None)
    assert len(edges) >= 18
    for cls, parent in edges[1:]:
        assert parent is not None
        assert parent in cls.__bases__, f"{cls.__name__} is drawn under {parent.__name__}"


def test_every_error_of_the_service_is_drawn() -> None:
    """No NotifierError subclass defined in service/ is missing from the drawing (a new error
    must find its place in the one tree)."""
    every_service_module()
    drawn = {cls for cls, _ in drawn_tree()}
    ours = {c for c in subclasses(NotifierError) if c.__module__.startswith("service.")}
    assert ours - drawn == set()


def test_decisions_read_the_types_the_tree_promises() -> None:
    """The subtrees the dispatcher and `run` decide on hold: opted-out and unregistered are
    refusals of the recipient, a misconfiguration is permanent but not about the recipient,
    and a config error stays catchable as the ValueError it used to be."""
    from service.channels import errors as e
    from service.ledger.errors import LedgerError, SchemaOutOfDateError
    from service.policy import PolicyError
    from service.settings_check import StartupError

    assert issubclass(e.RecipientOptedOut, e.RecipientRefused)
    assert issubclass(e.TokenUnregistered, e.RecipientRefused)
    assert issubclass(e.RecipientRefused, e.PermanentProviderError)
    assert issubclass(e.ProviderMisconfigured, e.PermanentProviderError)
    assert not issubclass(e.ProviderMisconfigured, e.RecipientRefused)
    for branch in (e.TransientProviderError, e.AmbiguousProviderError):
        assert not issubclass(branch, e.PermanentProviderError)
    assert issubclass(SchemaOutOfDateError, LedgerError)
    assert issubclass(LedgerError, NotifierError)
    assert issubclass(StartupError, NotifierError)
    error = PolicyError("policy p.yaml cannot be read")
    assert isinstance(error, ValueError)
    assert (error.variable, str(error)) == ("NOTIFIER_POLICY_FILE", "policy p.yaml cannot be read")
