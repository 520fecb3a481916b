"""Every rejection rule of the three format files, hardened parsing, labels and Bundle shape."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from mapping_support import DATA, NOW, SENDER

import mappings
from mappings import MappingError, as_collection, detect_format, map_document
from mappings._identifiers import is_valid_cpr, is_valid_cvr, is_valid_ean

REHAB = (DATA / "rehab-plan/sample-ggop-shoulder-electrician/input.xml").read_text()
STATEMENT = (DATA / "gp-statement/sample-lae285-statement-ole/input.xml").read_text()
REQUEST = (DATA / "gp-statement/sample-lae285-request-ole/input.xml").read_text()
MULIGHED = (DATA / "gp-statement/sample-mulighed-birgitte/input.xml").read_text()
CASE = (DATA / "jobcentre-case/sample-sag-ole-aarhus/input.xml").read_text()
HEALTH_DATA = ("1507791235", "2211853346", "Kristensen", "DM751", "DF432", "Østergaard")


def _reject(text: str | bytes, **kwargs: Any) -> MappingError:
    raw = text.encode("utf-8") if isinstance(text, str) else text
    with pytest.raises(MappingError) as info:
        map_document(raw, now=NOW, sender=SENDER, **kwargs)
    error = info.value
    assert error.issues and all(i.severity in ("fatal", "error", "warning") for i in error.issues)
    message = str(error) + " ".join(i.expression + i.text for i in error.issues)
    for value in HEALTH_DATA:
        assert value not in message, "an error message carries health data"
    return error


def _has(error: MappingError, expression: str, text: str) -> None:
    assert any(
        i.expression == expression and text in i.text and i.severity in ("error", "fatal")
        for i in error.issues
    ), [(i.expression, i.text) for i in error.issues]


def _sub(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new, 1)


def _resources(bundle: dict[str, Any], rtype: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


def _labels(resource: dict[str, Any]) -> set[str]:
    return {c["code"] for c in resource.get("meta", {}).get("security", [])}


# --- hardened parsing (all formats) ---------------------------------------------------------

XXE = """<?xml version="1.0"?>
<!DOCTYPE Emessage [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Emessage xmlns="urn:oio:medcom:municipality:1.0.4">&xxe;</Emessage>"""
BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'
        for i in range(1, 10)
    )
    + ']>\n<Blanket xmlns="urn:brobygger:blanket:1">&lol9;</Blanket>'
)


@pytest.mark.parametrize(
    ("document", "text"),
    [
        (XXE, "DOCTYPE"),
        (BILLION_LAUGHS, "DOCTYPE"),
        (XXE.encode("utf-16"), "DOCTYPE"),
        ("<Emessage xmlns='urn:oio:medcom:municipality:1.0.4'><Envelope>", "not well-formed"),
        (b"\xff\xfe\x00garbage", "not"),
        ("", "not"),
        ("<Other xmlns='urn:example'/>", "unknown document"),
        ("<Emessage/>", "unknown document"),  # right root, no namespace
        ("<Blanket xmlns='urn:oio:medcom:municipality:1.0.4'/>", "unknown document"),
    ],
)
def test_unsafe_or_unknown_documents_are_refused(document: str | bytes, text: str) -> None:
    error = _reject(document)
    assert any(text in i.text for i in error.issues)
    assert all(i.severity == "fatal" for i in error.issues)


def test_xxe_is_never_resolved(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    document = XXE.replace("file:///etc/passwd", secret.as_uri())
    error = _reject(document)
    assert "TOP-SECRET" not in str(error)


def test_documents_over_the_size_limit_are_refused_before_parsing() -> None:
    padding = "<!--" + "x" * 200 + "-->"
    big = REHAB.replace("<Envelope>", padding * 30 + "<Envelope>")
    error = _reject(big, max_bytes=4096)
    assert "larger than the limit of 4096 bytes" in error.issues[0].text
    huge = b"<" * (mappings.MAX_DOCUMENT_BYTES + 1)  # not even XML: the size check comes first
    assert "larger than the limit" in _reject(huge).issues[0].text
    assert map_document(REHAB.encode(), now=NOW).format == "rehab-plan"


def test_detect_format_by_namespace_and_root() -> None:
    assert detect_format(REHAB.encode()) == "rehab-plan"
    assert detect_format(STATEMENT.encode()) == "gp-statement"
    assert detect_format(CASE.encode()) == "jobcentre-case"
    with pytest.raises(MappingError):
        detect_format(b"<x/>")


def test_format_argument_must_match_the_document() -> None:
    error = _reject(REHAB, format="jobcentre-case")
    assert "expected a jobcentre-case document" in error.issues[0].text
    with pytest.raises(ValueError, match="unknown format"):
        map_document(REHAB.encode(), format="pdf", now=NOW)
    with pytest.raises(ValueError, match="timezone-aware"):
        map_document(REHAB.encode(), now=NOW.replace(tzinfo=None))


# --- rehab-plan-ggop.md: "Rejected with an OperationOutcome" -------------------------------

P = "/Emessage/RehabilitationPlan"
REHAB_RULES: list[tuple[str, Callable[[str], str], str, str]] = [
    (
        "wrong namespace",
        lambda t: t.replace("urn:oio:medcom:municipality:1.0.4", "urn:oio:medcom:other"),
        "/*",
        "unknown document",
    ),
    (
        "missing Patient CPR",
        lambda t: re.sub(r"<CivilRegistrationNumber>\d+</CivilRegistrationNumber>", "", t),
        f"{P}/Patient/CivilRegistrationNumber",
        "required element is missing",
    ),
    (
        "empty Patient CPR",
        lambda t: _sub(t, "<CivilRegistrationNumber>1507791235<", "<CivilRegistrationNumber> <"),
        f"{P}/Patient/CivilRegistrationNumber",
        "required element is empty",
    ),
    (
        "invalid CPR date",
        lambda t: _sub(t, ">1507791235<", ">3102791235<"),
        f"{P}/Patient/CivilRegistrationNumber",
        "must be a CPR number",
    ),
    (
        "missing Sender SOR",
        lambda t: _sub(t, "<Identifier>265161000016000</Identifier>", ""),
        f"{P}/Sender/Identifier",
        "required element is missing",
    ),
    (
        "Sender identifier not SOR",
        lambda t: _sub(
            t, "<IdentifierCode>sor</IdentifierCode>", "<IdentifierCode>ean</IdentifierCode>"
        ),
        f"{P}/Sender/IdentifierCode",
        "must be sor",
    ),
    (
        "no PrimaryDiagnosis",
        lambda t: re.sub(r"<PrimaryDiagnosis>.*?</PrimaryDiagnosis>", "", t),
        f"{P}/ICD10Diagnoses/PrimaryDiagnosis",
        "required element is missing",
    ),
    (
        "two PrimaryDiagnosis",
        lambda t: t.replace("<SecondaryDiagnosis>", "<PrimaryDiagnosis>").replace(
            "</SecondaryDiagnosis>", "</PrimaryDiagnosis>"
        ),
        f"{P}/ICD10Diagnoses/PrimaryDiagnosis[2]",
        "may occur only once",
    ),
    (
        "ICF gradient above 4",
        lambda t: _sub(t, "<ICFGradient>4</ICFGradient>", "<ICFGradient>5</ICFGradient>"),
        f"{P}/ICFClassifications/ICFClassification[3]/ICFGradient",
        "between 0 and 4",
    ),
    (
        "ICF gradient below 0",
        lambda t: _sub(t, "<ICFGradient>3</ICFGradient>", "<ICFGradient>-1</ICFGradient>"),
        f"{P}/ICFClassifications/ICFClassification[1]/ICFGradient",
        "between 0 and 4",
    ),
    (
        "ICF gradient not a number",
        lambda t: _sub(t, "<ICFGradient>3</ICFGradient>", "<ICFGradient>tre</ICFGradient>"),
        f"{P}/ICFClassifications/ICFClassification[1]/ICFGradient",
        "whole number",
    ),
    (
        "unknown plan type",
        lambda t: _sub(t, ">almen-avanceret<", ">almen<"),
        f"{P}/TypeOfRehabilitationPlan",
        "must be one of",
    ),
    (
        "bad EAN check digit",
        lambda t: _sub(t, ">5790000121526<", ">5790000121527<"),
        f"{P}/Sender/EANIdentifier",
        "GS1 check digit",
    ),
    (
        "discharge before admission",
        lambda t: _sub(t, "<End><Date>2026-10-02", "<End><Date>2026-09-01"),
        f"{P}/CurrentHospitalContact/End",
        "before the admission",
    ),
    (
        "invalid date",
        lambda t: _sub(t, "<Date>2026-10-09</Date>", "<Date>2026-02-30</Date>"),
        f"{P}/RehabilitationDeadline/Date",
        "must be a date",
    ),
    (
        "ConsentInformed not boolean",
        lambda t: _sub(t, "<ConsentInformed>true<", "<ConsentInformed>ja<"),
        f"{P}/ConsentInformed",
        "true or false",
    ),
]


@pytest.mark.parametrize(
    ("name", "change", "where", "text"), REHAB_RULES, ids=[r[0] for r in REHAB_RULES]
)
def test_rehab_plan_rejections(
    name: str, change: Callable[[str], str], where: str, text: str
) -> None:
    _has(_reject(change(REHAB)), where, text)


def test_every_broken_rule_is_reported_at_once() -> None:
    broken = _sub(REHAB, ">1507791235<", ">3102791235<")
    broken = _sub(broken, "<ICFGradient>4</ICFGradient>", "<ICFGradient>9</ICFGradient>")
    error = _reject(broken)
    assert len([i for i in error.issues if i.severity == "error"]) == 2


# --- gp-statement.md ---------------------------------------------------------------------------

F = "/Blanket/Felter"
GP_RULES: list[tuple[str, str, Callable[[str], str], str, str]] = [
    (
        "form code without a Questionnaire",
        STATEMENT,
        lambda t: _sub(t, 'kode="LAE285"', 'kode="LAE999"'),
        "/Blanket/@kode",
        "without a Questionnaire",
    ),
    (
        "form version without a Questionnaire",
        STATEMENT,
        lambda t: _sub(t, 'version="2024"', 'version="1999"'),
        "/Blanket/@version",
        "without a Questionnaire",
    ),
    (
        "unknown field id",
        STATEMENT,
        lambda t: _sub(t, 'id="4.1"' if 'id="4.1"' in t else 'id="2.2"', 'id="9.9"'),
        f"{F}/Felt[@id='9.9']",
        "unknown to the LAE285 Questionnaire",
    ),
    (
        "value of the wrong type",
        STATEMENT,
        lambda t: _sub(
            t, '<Felt id="3.2" type="decimal">15<', '<Felt id="3.2" type="decimal">femten<'
        ),
        f"{F}/Felt[@id='3.2']",
        "decimal number",
    ),
    (
        "declared type differs from the Questionnaire",
        STATEMENT,
        lambda t: _sub(t, 'id="3.5" type="date"', 'id="3.5" type="text"'),
        f"{F}/Felt[@id='3.5']",
        "must have type date",
    ),
    (
        "invalid date value",
        STATEMENT,
        lambda t: _sub(t, ">2027-01-11<", ">11-01-2027<"),
        f"{F}/Felt[@id='3.5']",
        "must be a date",
    ),
    (
        "code outside its list",
        STATEMENT,
        lambda t: _sub(t, ">8-12-uger<", ">lang<"),
        f"{F}/Felt[@id='3.4']",
        "must be one of",
    ),
    (
        "missing required field",
        STATEMENT,
        lambda t: re.sub(r'<Felt id="3\.1".*?</Felt>', "", t),
        f"{F}/Felt[@id='3.1']",
        "required field is missing",
    ),
    (
        "repeated single field",
        STATEMENT,
        lambda t: _sub(
            t,
            '<Felt id="3.1" type="code">delvis</Felt>',
            '<Felt id="3.1" type="code">delvis</Felt><Felt id="3.1" type="code">ingen</Felt>',
        ),
        f"{F}/Felt[@id='3.1']",
        "only once",
    ),
    (
        "diagnosis without its code system",
        STATEMENT,
        lambda t: _sub(t, ' system="urn:oid:1.2.208.176.2.4.12">DM751', ">DM751"),
        f"{F}/Felt[@id='2.1']/@system",
        "needs its code system",
    ),
    (
        "statement without YDER",
        STATEMENT,
        lambda t: _sub(t, "<Ydernummer>045612</Ydernummer>", ""),
        "/Blanket/Meta/Afsender/Ydernummer",
        "YDER number is required",
    ),
    (
        "statement without the signing doctor",
        STATEMENT,
        lambda t: re.sub(r"<Laege>.*?</Laege>", "", t),
        "/Blanket/Meta/Laege",
        "signing doctor is required",
    ),
    (
        "invalid CPR",
        STATEMENT,
        lambda t: _sub(t, "<CPR>1507791235<", "<CPR>1513791235<"),
        "/Blanket/Meta/Borger/CPR",
        "must be a CPR number",
    ),
    (
        "Udstedt without offset",
        STATEMENT,
        lambda t: _sub(t, "2026-10-15T15:40:00+02:00", "2026-10-15T15:40:00"),
        "/Blanket/Meta/Udstedt",
        "UTC offset",
    ),
    (
        "request without svarfrist",
        REQUEST,
        lambda t: re.sub(r'<Felt id="svarfrist".*?</Felt>', "", t),
        f"{F}/Felt[@id='svarfrist']",
        "required field is missing",
    ),
    (
        "invalid employer CVR",
        MULIGHED,
        lambda t: _sub(t, "<CVR>29421005<", "<CVR>29421006<"),
        "/Blanket/Meta/Modtager/CVR",
        "modulus-11",
    ),
]


@pytest.mark.parametrize(
    ("name", "source", "change", "where", "text"), GP_RULES, ids=[r[0] for r in GP_RULES]
)
def test_gp_statement_rejections(
    name: str, source: str, change: Callable[[str], str], where: str, text: str
) -> None:
    _has(_reject(change(source)), where, text)


@pytest.mark.parametrize(
    "field",
    [
        '<Felt id="2.1" type="code" system="urn:oid:1.2.208.176.2.4.12">DF432</Felt>',
        '<Felt id="2.3" type="code" system="http://hl7.org/fhir/sid/icd-10">F43</Felt>',
        '<Felt id="2.2" type="text" system="urn:oid:1.2.208.176.2.4">DM511</Felt>',
    ],
)
def test_a_mulighedserklaering_carrying_a_diagnosis_is_fatal(field: str) -> None:
    document = re.sub(r'<Felt id="2\.1".*?</Felt>', field, MULIGHED, flags=re.S)
    error = _reject(document)
    fatal = [i for i in error.issues if i.severity == "fatal"]
    assert fatal and "must never carry a diagnosis" in fatal[0].text
    assert fatal[0].expression.startswith("/Blanket/Felter/Felt[@id=")


def test_a_mulighedserklaering_naming_a_diagnosis_code_in_free_text_is_fatal() -> None:
    document = _sub(MULIGHED, "Kan ikke løfte", "Pga. DM511 kan ikke løfte")
    _has(_reject(document), "/Blanket/Felter/Felt[@id='2.1']", "must never carry a diagnosis")


# --- jobcentre-case.md -----------------------------------------------------------------------

C = "/Sygedagpengesag"
CASE_RULES: list[tuple[str, Callable[[str], str], str, str]] = [
    ("missing SagId", lambda t: re.sub(r"<SagId>.*?</SagId>", "", t), f"{C}/SagId", "missing"),
    (
        "missing Kommunekode",
        lambda t: re.sub(r"<Kommunekode>.*?</Kommunekode>", "", t),
        f"{C}/Kommunekode",
        "missing",
    ),
    (
        "missing CPR",
        lambda t: re.sub(r"<CPR>.*?</CPR>", "", t),
        f"{C}/Borger/CPR",
        "missing",
    ),
    (
        "invalid CPR date",
        lambda t: _sub(t, "<CPR>1507791235<", "<CPR>0000791235<"),
        f"{C}/Borger/CPR",
        "must be a CPR number",
    ),
    (
        "CVR failing modulus 11",
        lambda t: _sub(t, "<CVR>35411003<", "<CVR>35411004<"),
        f"{C}/Arbejdsgiver/CVR",
        "modulus-11",
    ),
    (
        "Opdateret more than a day in the future",
        lambda t: _sub(t, "2026-11-03T12:00:00+01:00", "2026-11-21T12:00:00+01:00"),
        f"{C}/Opdateret",
        "more than a day in the future",
    ),
    (
        "Periode til before fra",
        lambda t: _sub(t, 'fra="2026-11-10" til="2026-11-30"', 'fra="2026-11-10" til="2026-11-01"'),
        f"{C}/DelvisRaskmelding/Optrapningsplan/Periode[2]/@til",
        "ends before it starts",
    ),
    (
        "hours per week above 37",
        lambda t: _sub(t, 'timerPrUge="30"', 'timerPrUge="38"'),
        f"{C}/DelvisRaskmelding/Optrapningsplan/Periode[3]/@timerPrUge",
        "between 0 and 37",
    ),
    (
        "hours per week below 0",
        lambda t: _sub(t, 'timerPrUge="12"', 'timerPrUge="-1"'),
        f"{C}/DelvisRaskmelding/Optrapningsplan/Periode[1]/@timerPrUge",
        "between 0 and 37",
    ),
    (
        "unknown category",
        lambda t: _sub(t, ">2</Kategori>", ">4</Kategori>"),
        f"{C}/Kategori",
        "must be one of",
    ),
    (
        "unknown day",
        lambda t: _sub(t, "<Dage>man,ons,fre</Dage>", "<Dage>man,lør</Dage>"),
        f"{C}/DelvisRaskmelding/Optrapningsplan/Periode[1]/Dage",
        "days must be",
    ),
    (
        "follow-up without a date",
        lambda t: _sub(t, 'dato="2026-10-22" ', ""),
        f"{C}/Opfoelgninger/Opfoelgning/@dato",
        "required attribute",
    ),
]


@pytest.mark.parametrize(
    ("name", "change", "where", "text"), CASE_RULES, ids=[r[0] for r in CASE_RULES]
)
def test_jobcentre_case_rejections(
    name: str, change: Callable[[str], str], where: str, text: str
) -> None:
    _has(_reject(change(CASE)), where, text)


def test_opdateret_up_to_a_day_ahead_is_accepted() -> None:
    ahead = (NOW + timedelta(hours=23)).isoformat()
    document = _sub(CASE, "2026-11-03T12:00:00+01:00", ahead)
    assert map_document(document.encode(), now=NOW).source.issued.isoformat() == ahead


# --- identifiers.md ----------------------------------------------------------------------------


def test_identifier_checks() -> None:
    assert is_valid_cpr("1507791235") and is_valid_cpr("1507791234")  # no modulus 11
    assert not is_valid_cpr("3002791235") and not is_valid_cpr("150779123")
    assert is_valid_cpr("2902004000") and not is_valid_cpr("2902000000")  # 2000 vs 1900
    assert is_valid_ean("5790000121526") and not is_valid_ean("5790000121525")
    assert is_valid_cvr("35411003") and not is_valid_cvr("35411004")


# --- output: transaction shape, labels, nothing lost -----------------------------------------


def test_transaction_bundle_links_shared_resources_conditionally() -> None:
    result = map_document(STATEMENT.encode(), now=NOW, sender=SENDER)
    bundle = result.bundle
    assert bundle["type"] == "transaction"
    urls = [e["fullUrl"] for e in bundle["entry"]]
    assert len(urls) == len(set(urls)) and all(u.startswith("urn:uuid:") for u in urls)
    by_type = {e["resource"]["resourceType"]: e for e in bundle["entry"]}
    assert by_type["Patient"]["request"] == {
        "method": "POST",
        "url": "Patient",
        "ifNoneExist": "identifier=urn:oid:1.2.208.176.1.2|1507791235",
    }
    orgs = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "Organization"]
    assert [o["request"]["ifNoneExist"] for o in orgs] == [
        "identifier=urn:oid:1.2.208.176.1.4|045612",
        "identifier=http://hl7.dk/fhir/core/CodeSystem/dk-core-municipality-codes|0751",
    ]
    response = by_type["QuestionnaireResponse"]
    assert response["request"] == {
        "method": "PUT",
        "url": "QuestionnaireResponse?identifier=http://brobygger.dk/fhir/sid/form|"
        "yder:045612/YDER045612-LAE285-2026-0331",
    }
    # Every reference inside points at an entry of the Bundle (or is a logical reference).
    for entry in bundle["entry"]:
        for ref in re.findall(r"'reference': '([^']+)'", str(entry["resource"])):
            assert ref in urls
    assert response["resource"]["basedOn"][0]["identifier"]["value"] == (
        "kommune:0751/JCA-ANM-2026-10-0187"
    )
    assert result.answers_request == (
        "http://brobygger.dk/fhir/sid/statement-request",
        "kommune:0751/JCA-ANM-2026-10-0187",
    )


def test_a_statement_answers_the_request_it_names() -> None:
    request = map_document(REQUEST.encode(), now=NOW)
    service_request = _resources(request.bundle, "ServiceRequest")[0]
    statement = map_document(STATEMENT.encode(), now=NOW)
    identifier = service_request["identifier"][0]
    assert statement.answers_request == (identifier["system"], identifier["value"])
    task = _resources(request.bundle, "Task")[0]
    assert task["status"] == "requested" and task["restriction"]["period"]["end"] == "2026-10-20"


def test_original_document_is_kept_with_its_sha256_and_linked_by_provenance() -> None:
    raw = REHAB.encode()
    result = map_document(raw, now=NOW, sender=SENDER)
    (document,) = _resources(result.bundle, "DocumentReference")
    attachment = document["content"][0]["attachment"]
    assert base64.b64decode(attachment["data"]) == raw
    assert attachment["hash"] == base64.b64encode(hashlib.sha1(raw).digest()).decode()  # noqa: S324
    assert document["masterIdentifier"] == {
        "system": "http://brobygger.dk/fhir/sid/sha256",
        "value": hashlib.sha256(raw).hexdigest(),
    }
    assert result.source.sha256 == hashlib.sha256(raw).hexdigest()
    (provenance,) = _resources(result.bundle, "Provenance")
    entries = {
        e["resource"]["resourceType"] + e["fullUrl"]: e["fullUrl"] for e in result.bundle["entry"]
    }
    doc_url = next(u for k, u in entries.items() if k.startswith("DocumentReference"))
    assert provenance["entity"] == [
        {"role": "source", "what": {"reference": doc_url, "type": "DocumentReference"}}
    ]
    targets = {t["reference"] for t in provenance["target"]}
    expected = {
        u for k, u in entries.items() if not k.startswith(("DocumentReference", "Provenance"))
    }
    assert targets == expected
    assert {
        "identifier": {"system": "http://brobygger.dk/fhir/sid/client-id", "value": SENDER}
    } in [a["who"] for a in provenance["agent"]]


def test_employment_relevant_labels_only_on_what_an_employer_may_see() -> None:
    bundle = map_document(STATEMENT.encode(), now=NOW).bundle
    for observation in _resources(bundle, "Observation"):
        assert _labels(observation) == {"medical-statement", "employment-relevant"}
    codes = {o["code"]["coding"][0]["code"] for o in _resources(bundle, "Observation")}
    assert codes == {
        "work-capacity",
        "hours-per-week",
        "accommodations",
        "expected-duration",
        "return-to-work-date",
    }
    for rtype in ("Condition", "QuestionnaireResponse", "DocumentReference"):
        for resource in _resources(bundle, rtype):
            assert "employment-relevant" not in _labels(resource)
    case = map_document(CASE.encode(), now=NOW).bundle
    assert _labels(_resources(case, "CarePlan")[0]) == {
        "sickness-benefit-case",
        "employment-relevant",
    }
    assert _labels(_resources(case, "EpisodeOfCare")[0]) == {"sickness-benefit-case"}


def test_mental_health_labels_follow_chapter_f() -> None:
    lae125 = (DATA / "gp-statement/sample-lae125-status-birgitte/input.xml").read_bytes()
    bundle = map_document(lae125, now=NOW).bundle
    labels = {c["code"]["coding"][0]["code"]: _labels(c) for c in _resources(bundle, "Condition")}
    assert labels == {
        "DM511": {"medical-statement"},
        "DF432": {"medical-statement", "mental-health"},
    }
    assert "mental-health" in _labels(_resources(bundle, "QuestionnaireResponse")[0])
    assert "mental-health" in _labels(_resources(bundle, "DocumentReference")[0])
    stress = (DATA / "jobcentre-case/sample-sag-closed-roskilde-stress/input.xml").read_bytes()
    case = map_document(stress, now=NOW).bundle
    assert "mental-health" in _labels(_resources(case, "EpisodeOfCare")[0])
    for encounter in _resources(case, "Encounter"):
        assert "mental-health" in _labels(encounter)
    plan = map_document(REHAB.encode(), now=NOW).bundle
    assert all("mental-health" not in _labels(e["resource"]) for e in plan["entry"])


def test_every_document_resource_is_labelled_and_tagged() -> None:
    for source in (REHAB, STATEMENT, REQUEST, MULIGHED, CASE):
        result = map_document(source.encode(), now=NOW)
        for entry in result.bundle["entry"]:
            resource = entry["resource"]
            if resource["resourceType"] in (
                "Patient",
                "Organization",
                "Practitioner",
                "PractitionerRole",
            ):
                continue
            assert _labels(resource), resource["resourceType"]
            if entry["request"]["method"] == "PUT" and resource["resourceType"] != "Provenance":
                assert resource["meta"]["tag"][0]["code"] == result.source.key


def test_unknown_elements_are_warnings_and_the_document_is_still_mapped() -> None:
    raw = (DATA / "rehab-plan/unknown-elements/input.xml").read_bytes()
    result = map_document(raw, now=NOW)
    assert [w.expression for w in result.warnings] == [
        "/Emessage/RehabilitationPlan/FutureElement",
        "/Emessage/RehabilitationPlan/*[local-name()='Vendor']",
        "/Emessage/RehabilitationPlan/Letter/@priority",
    ]
    assert all(w.severity == "warning" for w in result.warnings)


def test_resending_the_same_plan_targets_the_same_resources() -> None:
    first = map_document(REHAB.encode(), now=NOW)
    changed = _sub(REHAB, "Kan ikke arbejde over skulderhøjde.", "Kan nu løfte armen lidt.")
    second = map_document(changed.encode(), now=NOW + timedelta(days=1))
    urls = lambda r: [e["request"]["url"] for e in r.bundle["entry"]]  # noqa: E731
    # Same conditional targets, except the DocumentReference (new bytes) and its Provenance.
    differing = [(a, b) for a, b in zip(urls(first), urls(second), strict=True) if a != b]
    assert len(differing) == 2
    assert differing[0][0].startswith("DocumentReference?") and differing[1][0].startswith(
        "Provenance/"
    )


def test_as_collection_strips_requests() -> None:
    bundle = map_document(CASE.encode(), now=NOW).bundle
    collection = as_collection(bundle)
    assert collection["type"] == "collection"
    assert all("request" not in e for e in collection["entry"])
    assert bundle["type"] == "transaction" and all("request" in e for e in bundle["entry"])


def test_public_api_is_sorted_and_complete() -> None:
    assert mappings.__all__ == sorted(mappings.__all__)
    for name in mappings.__all__:
        assert hasattr(mappings, name)
    assert set(mappings.FORMATS) == {"rehab-plan", "gp-statement", "jobcentre-case"}
