"""Hardened XML reading: bytes → a checked tree of ``Node``s, with XPaths for every issue.

No DTD is loaded, no entity is expanded, nothing is fetched from the network, and documents
over the size limit are refused before parsing. A document with any DOCTYPE is refused outright
(that is where XXE and entity bombs live; none of our formats uses one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from lxml import etree

from mappings._errors import IssueCollector, MappingError, MappingIssue

# The default size limit (the issue: "setting, default 5 MB"); the gateway passes its setting.
MAX_DOCUMENT_BYTES = 5 * 1024 * 1024

Occurs = Literal["1", "?", "*", "+"]


def _refuse(text: str) -> MappingError:
    return MappingError([MappingIssue("fatal", "/", text)])


def parse_xml(xml_bytes: bytes, *, max_bytes: int = MAX_DOCUMENT_BYTES) -> etree._Element:
    """Parse ``xml_bytes`` safely and return the root element, or raise ``MappingError``."""
    if not isinstance(xml_bytes, bytes | bytearray):
        raise TypeError("parse_xml takes the document as bytes")
    if len(xml_bytes) > max_bytes:
        raise _refuse(f"the document is larger than the limit of {max_bytes} bytes")
    if b"<!DOCTYPE" in xml_bytes or b"<!ENTITY" in xml_bytes:
        raise _refuse("a DOCTYPE or ENTITY declaration is not allowed")
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        collect_ids=False,
    )
    try:
        root = etree.fromstring(bytes(xml_bytes), parser)
    except etree.XMLSyntaxError as exc:
        # Only the position: libxml2's message may quote the document's content.
        where = f"line {exc.lineno}" if exc.lineno else "unknown position"
        raise _refuse(f"not well-formed XML (at {where})") from exc
    except ValueError as exc:
        raise _refuse("not a readable XML document") from exc
    if root is None:
        raise _refuse("the document is empty")
    docinfo = root.getroottree().docinfo
    if (
        getattr(docinfo, "doctype", "")
        or getattr(docinfo, "internalDTD", None) is not None
        or getattr(docinfo, "externalDTD", None) is not None
    ):
        # Reached by encodings the byte scan above cannot see (UTF-16, UTF-32).
        raise _refuse("a DOCTYPE or ENTITY declaration is not allowed")
    for node in root.iter():
        if isinstance(node, etree._Entity):
            raise _refuse("entity references are not allowed")
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
    for key, value in element.attrib.items():
        qname = etree.QName(key)
        if qname.namespace is None and qname.localname in shape.attributes:
            node.attributes[qname.localname] = value.strip()
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
