"""Hardened XML reading: bytes → a checked tree of ``Node``s, with XPaths for every issue.

No DTD is loaded, no entity is expanded, nothing is fetched from the network, and documents
over the size limit are refused before parsing. A document with any DOCTYPE is refused outright
(that is where XXE and entity bombs live; none of our formats uses one).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from io import BytesIO
from typing import Any, Literal

from lxml import etree

from mappings._errors import IssueCollector, MappingError, MappingIssue

# The default size limit (the issue: "setting, default 5 MB"); the gateway passes its setting.
MAX_DOCUMENT_BYTES = 5 * 1024 * 1024

Occurs = Literal["1", "?", "*", "+"]


@dataclass(frozen=True, slots=True)
class XmlLimits:
    """Structural limits checked while a document is read (the gateway passes its settings).

    Our formats use at most a few attributes per element, a few hundred elements and a depth
    under ten; the defaults leave ample room and still bound the work a hostile document costs.
    """

    max_bytes: int = MAX_DOCUMENT_BYTES
    max_attributes: int = 64
    max_elements: int = 50_000
    max_depth: int = 32
    max_text_chars: int = 100_000


class XmlLimitExceeded(MappingError):
    """A structural limit is exceeded; ``limit`` names the ``XmlLimits`` field."""

    def __init__(self, limit: str, value: int, where: str, text: str) -> None:
        super().__init__([MappingIssue("fatal", where, f"{text} (limit {limit}={value})")])
        self.limit = limit
        self.value = value

    def __reduce__(self) -> tuple[Any, ...]:
        # Crosses the worker-process boundary: rebuilt from its own arguments.
        issue = self.issues[0]
        text = issue.text.rsplit(" (limit ", 1)[0]
        return (type(self), (self.limit, self.value, issue.expression, text))


def _refuse(text: str) -> MappingError:
    return MappingError([MappingIssue("fatal", "/", text)])


def _parser_options() -> dict[str, Any]:
    return {
        "resolve_entities": False,
        "no_network": True,
        "load_dtd": False,
        "dtd_validation": False,
        "huge_tree": False,
        "remove_comments": True,
        "remove_pis": True,
        "collect_ids": False,
    }


def parse_xml(
    xml_bytes: bytes, *, max_bytes: int | None = None, limits: XmlLimits | None = None
) -> etree._Element:
    """Parse ``xml_bytes`` safely and return the root element, or raise ``MappingError``.

    The structural limits are checked while the document is read (``iterparse``): a
    document breaking one stops being read at the element that breaks it.
    """
    if not isinstance(xml_bytes, bytes | bytearray):
        raise TypeError("parse_xml takes the document as bytes")
    limits = limits or XmlLimits()
    if max_bytes is not None:
        limits = replace(limits, max_bytes=max_bytes)
    if len(xml_bytes) > limits.max_bytes:
        raise _refuse(f"the document is larger than the limit of {limits.max_bytes} bytes")
    if b"<!DOCTYPE" in xml_bytes or b"<!ENTITY" in xml_bytes:
        raise _refuse("a DOCTYPE or ENTITY declaration is not allowed")
    try:
        root = _read_checked(bytes(xml_bytes), limits)
    except etree.XMLSyntaxError as exc:
        # Only the position: libxml2's message may quote the document's content.
        where = f"line {exc.lineno}" if exc.lineno else "unknown position"
        raise _refuse(f"not well-formed XML (at {where})") from exc
    except ValueError as exc:
        if isinstance(exc, MappingError):
            raise
        raise _refuse("not a readable XML document") from exc
    if root is None:
        raise _refuse("the document is empty")
    return root


def _refuse_doctype(root: etree._Element) -> None:
    docinfo = root.getroottree().docinfo
    if (
        getattr(docinfo, "doctype", "")
        or getattr(docinfo, "internalDTD", None) is not None
        or getattr(docinfo, "externalDTD", None) is not None
    ):
        # Reached by encodings the byte scan above cannot see (UTF-16, UTF-32).
        raise _refuse("a DOCTYPE or ENTITY declaration is not allowed")


def _xpath(element: etree._Element) -> str:
    """A positional XPath (``/*/*[3]``): where, without quoting names or content."""
    return str(element.getroottree().getpath(element))


def _read_checked(xml_bytes: bytes, limits: XmlLimits) -> etree._Element | None:
    """Read the document event by event, checking every limit as each element arrives."""
    events = etree.iterparse(BytesIO(xml_bytes), events=("start", "end"), **_parser_options())
    depth = 0
    elements = 0
    root: etree._Element | None = None
    # A refusal names the element by its position in document order, never by content.
    for event, element in events:
        if event == "start":
            depth += 1
            elements += 1
            if root is None:
                root = element
                _refuse_doctype(root)
            if depth > limits.max_depth:
                raise XmlLimitExceeded(
                    "max_depth", limits.max_depth, _xpath(element), "elements nest too deep"
                )
            if elements > limits.max_elements:
                raise XmlLimitExceeded(
                    "max_elements",
                    limits.max_elements,
                    "/",
                    "the document has too many elements",
                )
            # len() counts without reading values (lxml's attrib.items() is quadratic).
            if len(element.attrib) > limits.max_attributes:
                raise XmlLimitExceeded(
                    "max_attributes",
                    limits.max_attributes,
                    _xpath(element),
                    "an element has too many attributes",
                )
        else:
            depth -= 1
            texts = [element.text]
            for node in element:  # children are complete now, their tails too
                if isinstance(node, etree._Entity):
                    raise _refuse("entity references are not allowed")
                texts.append(node.tail)
            if any(len(text or "") > limits.max_text_chars for text in texts):
                raise XmlLimitExceeded(
                    "max_text_chars",
                    limits.max_text_chars,
                    _xpath(element),
                    "a text is too long",
                )
    return root


def root_name(root: etree._Element) -> tuple[str | None, str]:
    """(namespace, local name) of an element."""
    qname = etree.QName(root)
    return qname.namespace, qname.localname


@dataclass(frozen=True, slots=True)
class Shape:
    """What an element may contain: child shapes, attributes, and whether it holds text."""

    name: str
    occurs: Occurs = "1"
    children: tuple[Shape, ...] = ()
    attributes: tuple[str, ...] = ()
    required_attributes: tuple[str, ...] = ()
    text: bool | None = None  # None: text when there are no children

    @property
    def holds_text(self) -> bool:
        return not self.children if self.text is None else self.text


def leaf(name: str, occurs: Occurs = "1", *attributes: str) -> Shape:
    return Shape(name, occurs, attributes=attributes)


@dataclass(slots=True)
class Node:
    """A checked element: its XPath, stripped text (None when empty), attributes, children."""

    name: str
    path: str
    text: str | None
    attributes: dict[str, str]
    children: dict[str, list[Node]] = field(default_factory=dict)

    def one(self, name: str) -> Node | None:
        found = self.children.get(name)
        return found[0] if found else None

    def all(self, name: str) -> list[Node]:
        return self.children.get(name, [])

    def text_of(self, name: str) -> str | None:
        child = self.one(name)
        return child.text if child is not None else None

    def child_path(self, name: str) -> str:
        child = self.one(name)
        return child.path if child is not None else f"{self.path}/{name}"

    def attribute_path(self, name: str) -> str:
        return f"{self.path}/@{name}"


def _direct_text(element: etree._Element) -> str | None:
    parts = [element.text or ""]
    parts.extend(child.tail or "" for child in element)
    text = "".join(parts).strip()
    return text or None


def _display_name(qname: etree.QName, namespace: str) -> str:
    # An element from another namespace is named by local name only (no namespace prefixes).
    if qname.namespace == namespace:
        return qname.localname
    return f"*[local-name()='{qname.localname}']"


def read_tree(
    element: etree._Element, shape: Shape, namespace: str, issues: IssueCollector, path: str = ""
) -> Node:
    """Check ``element`` against ``shape``; unknown content is a warning, rule breaks errors."""
    here = path or f"/{shape.name}"
    node = Node(shape.name, here, _direct_text(element), {})
    # Names first, values only for the known ones: lxml's ``attrib.items()`` looks every
    # value up by name, quadratic in the number of attributes (30,000 took seconds).
    for key in element.attrib.keys():
        qname = etree.QName(key)
        if qname.namespace is None and qname.localname in shape.attributes:
            node.attributes[qname.localname] = (element.get(key) or "").strip()
        else:
            issues.warning(
                f"{here}/@{qname.localname}",
                "unknown attribute: kept in the original document, not mapped",
            )
    for name in shape.required_attributes:
        if not node.attributes.get(name):
            issues.error(f"{here}/@{name}", "required attribute is missing or empty")
    if node.text is not None and not shape.holds_text:
        issues.warning(here, "unexpected text: kept in the original document, not mapped")
    known = {child.name: child for child in shape.children}
    grouped: dict[str, list[etree._Element]] = {}
    for child in element:
        if not isinstance(child.tag, str):
            continue
        qname = etree.QName(child)
        if qname.namespace == namespace and qname.localname in known:
            grouped.setdefault(qname.localname, []).append(child)
        else:
            issues.warning(
                f"{here}/{_display_name(qname, namespace)}",
                "unknown element: kept in the original document, not mapped",
            )
    for child_shape in shape.children:
        found = grouped.get(child_shape.name, [])
        if not found and child_shape.occurs in ("1", "+"):
            issues.error(f"{here}/{child_shape.name}", "required element is missing")
        if len(found) > 1 and child_shape.occurs in ("1", "?"):
            issues.error(f"{here}/{child_shape.name}[2]", "element may occur only once")
        nodes = []
        for index, child in enumerate(found, start=1):
            child_path = f"{here}/{child_shape.name}" + (f"[{index}]" if len(found) > 1 else "")
            nodes.append(read_tree(child, child_shape, namespace, issues, child_path))
        if nodes:
            node.children[child_shape.name] = nodes
        for child_node in nodes:
            if child_shape.holds_text and not child_shape.children and child_node.text is None:
                if child_shape.occurs in ("1", "+"):
                    issues.error(child_node.path, "required element is empty")
    return node
