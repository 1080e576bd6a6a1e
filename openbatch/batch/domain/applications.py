"""Applications and their package versions: the rules both views share.

An account's applications are documents (kind ``application``, keyed by the lower-cased name),
each version a document of kind ``appversion`` under its application. The management plane
(openbatch/arm) creates, updates, activates and deletes them; the Batch data plane lists them
(``GET /applications``) and resolves pools' and tasks' ``applicationPackageReferences`` against
them. A version's zip lives in the Blob endpoint, in a container of the account's own storage
(the account is its own auto-storage account): ``app-{digest of the application name}``, blob
``{application}-{version}-{guid}.zip``. Creating a version hands out a SAS URL to upload it to;
activation checks that the blob is there and makes the version usable.

States and names as Azure's management API has them: a version is ``Pending`` until activated,
then ``Active``; ``format`` is ``zip`` (the only format Azure accepts). Stores are written through
the Batch store (same durability: the caller flushes before answering).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from typing import Protocol

from openbatch.batch.domain import errors as e
from openbatch.batch.domain import execution as ex
from openbatch.batch.domain.common import BatchContext, Doc, now_iso

APP = "application"
VERSION = "appversion"
PENDING, ACTIVE = "Pending", "Active"
_APP_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_VERSION_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# What a package directory's name keeps of the application and version (the rest: the digest).
_DIR_SAFE = re.compile(r"[^A-Za-z0-9_.-]")
STORAGE_URL_HOURS = 4  # as long as Azure's upload URLs last


class PackageStorage(Protocol):
    """Where package zips are kept: containers and blobs of the Blob endpoint (openbatch/batch/appstorage.py)."""

    def prepare(self, account: str, container: str) -> None:
        """The container exists afterwards."""

    def exists(self, account: str, container: str, blob: str) -> bool: ...

    def delete(self, account: str, container: str, blob: str) -> None: ...

    def upload_url(self, account: str, container: str, blob: str, hours: int) -> tuple[str, str]:
        """(URL with a write SAS, its expiry time as ISO 8601)."""

    def read_url(self, account: str, container: str, blob: str) -> str:
        """The blob's URL with a read SAS, for a node to download it."""


@dataclass(frozen=True)
class Resolved:
    """A package a run gets: what it was asked as (version None: the default) and where it is."""

    application_id: str
    asked_version: str | None
    version: str
    container: str
    blob: str

    def directory(self) -> str:
        """Its directory under the node's ``applications/``: ``{id}{version}.{digest}``, as Azure's
        agent names it; the digest tells two uploads of one version apart."""
        digest = hashlib.sha256(f"{self.container}/{self.blob}".encode()).hexdigest()[:16]
        return _DIR_SAFE.sub("_", f"{self.application_id}{self.version}") + f".{digest}"


# --- names --------------------------------------------------------------------------------------


def check_application_name(name: str) -> str:
    if not _APP_NAME.match(name):
        raise e.InvalidPropertyValue("The application name must be 1-64 letters, digits, hyphens or underscores.",
                                     {"PropertyName": "applicationName", "PropertyValue": name})
    return name


def check_version_name(version: str) -> str:
    if not _VERSION_NAME.match(version):
        raise e.InvalidPropertyValue("The version must be 1-64 letters, digits, periods, hyphens or underscores.",
                                     {"PropertyName": "versionName", "PropertyValue": version})
    return version


def application_id_of(reference: str) -> str:
    """The application name of a reference: a plain id, or the full ARM resource id Azure asks pools
    for (``/subscriptions/.../batchAccounts/{account}/applications/{name}``)."""
    text = reference.rstrip("/")
    marker = "/applications/"
    at = text.lower().rfind(marker)
    return text[at + len(marker):] if at >= 0 else text


# --- applications -------------------------------------------------------------------------------


def get_application(ctx: BatchContext, account: str, name: str) -> Doc:
    doc = ctx.store.get(APP, account, name)
    if doc is None:
        raise e.ApplicationNotFound("The specified application does not exist.", {"ApplicationId": name})
    return doc


def list_applications(ctx: BatchContext, account: str) -> list[Doc]:
    return sorted(ctx.store.all(APP, account), key=lambda d: str(d["id"]).lower())


def versions(ctx: BatchContext, account: str, name: str) -> list[Doc]:
    return sorted(ctx.store.all(VERSION, account, name), key=lambda d: str(d["version"]).lower())


def put_application(ctx: BatchContext, account: str, name: str, props: Doc, *, create: bool) -> Doc:
    """Create (``create``: a PUT, which also replaces the properties of an existing one) or update
    (PATCH: only what ``props`` names) an application."""
    check_application_name(name)
    old = ctx.store.get(APP, account, name)
    if old is None and not create:
        raise e.ApplicationNotFound("The specified application does not exist.", {"ApplicationId": name})
    doc: Doc = {"id": old["id"] if old else name, "allowUpdates": True, "defaultVersion": None,
                "displayName": None} if create or old is None else dict(old)
    if old is not None and create:
        doc["defaultVersion"] = old.get("defaultVersion")
    if "displayName" in props:
        doc["displayName"] = None if props["displayName"] is None else str(props["displayName"])
    if "allowUpdates" in props:
        if not isinstance(props["allowUpdates"], bool):
            raise e.InvalidPropertyValue("allowUpdates must be true or false.",
                                         {"PropertyName": "allowUpdates", "PropertyValue": str(props["allowUpdates"])})
        doc["allowUpdates"] = props["allowUpdates"]
    if props.get("defaultVersion") is not None:
        version = str(props["defaultVersion"])
        if ctx.store.get(VERSION, account, version, parent=name) is None:
            raise e.ApplicationPackageNotFound("The default version names no package of the application.",
                                               {"ApplicationId": name, "Version": version})
        doc["defaultVersion"] = version
    ctx.store.put(APP, account, doc)
    return doc


def delete_application(ctx: BatchContext, account: str, name: str) -> None:
    get_application(ctx, account, name)
    for version in versions(ctx, account, name):
        _forget_version(ctx, account, name, version)
    ctx.store.delete(APP, account, name)


# --- versions -----------------------------------------------------------------------------------


def container_of(name: str) -> str:
    """The blob container of an application's packages (a valid container name for any app name)."""
    return "app-" + hashlib.sha256(name.lower().encode()).hexdigest()[:40]


def _storage(ctx: BatchContext) -> PackageStorage:
    if ctx.packages is None:
        raise e.BatchError("Application packages need the Blob endpoint, which this server does not run.")
    return ctx.packages


def get_version(ctx: BatchContext, account: str, name: str, version: str) -> Doc:
    app = get_application(ctx, account, name)
    doc = ctx.store.get(VERSION, account, version, parent=name)
    if doc is None:
        raise e.ApplicationPackageNotFound("The specified application package does not exist.",
                                           {"ApplicationId": str(app["id"]), "Version": version})
    return doc


def create_version(ctx: BatchContext, account: str, name: str, version: str) -> Doc:
    """A new pending version with a fresh blob to upload to (an existing one gets a new upload blob
    when its application allows updates; otherwise 409 ``ApplicationPackageAlreadyExists``)."""
    check_version_name(version)
    app = get_application(ctx, account, name)
    old = ctx.store.get(VERSION, account, version, parent=name)
    if old is not None and old.get("state") == ACTIVE and not app.get("allowUpdates", True):
        raise e.ApplicationPackageAlreadyExists(
            "The application does not allow updates and this version already exists.",
            {"ApplicationId": str(app["id"]), "Version": version})
    container = container_of(str(app["id"]))
    _storage(ctx).prepare(account, container)
    blob = f"{app['id']}-{version}-{uuid.uuid4()}.zip"
    if old is None:
        doc: Doc = {"version": version, "state": PENDING, "format": None, "lastActivationTime": None,
                    "_container": container, "_blob": blob}
    elif old.get("state") == ACTIVE:  # the active package keeps serving until the new upload is activated
        doc = {**old, "_next": blob}
    else:  # still pending: the same blob to upload to
        doc = dict(old)
    ctx.store.put(VERSION, account, doc, parent=name, key=version)
    return doc


def upload_location(ctx: BatchContext, account: str, doc: Doc) -> tuple[str, str]:
    """(storageUrl, storageUrlExpiry) of a version: where its zip is uploaded to."""
    blob = str(doc.get("_next") or doc["_blob"])
    return _storage(ctx).upload_url(account, str(doc["_container"]), blob, STORAGE_URL_HOURS)


def activate(ctx: BatchContext, account: str, name: str, version: str, fmt: str) -> Doc:
    """The uploaded zip becomes the version's package (409 ``ApplicationPackageBlobNotFound`` before the upload)."""
    doc = dict(get_version(ctx, account, name, version))
    if str(fmt).lower() != "zip":
        raise e.InvalidPropertyValue("The only package format is zip.", {"PropertyName": "format",
                                                                          "PropertyValue": str(fmt)})
    storage = _storage(ctx)
    blob = str(doc.pop("_next", None) or doc["_blob"])
    if not storage.exists(account, str(doc["_container"]), blob):
        raise e.ApplicationPackageBlobNotFound("The application package has not been uploaded.",
                                               {"ApplicationId": name, "Version": version})
    if blob != doc["_blob"]:
        storage.delete(account, str(doc["_container"]), str(doc["_blob"]))
        doc["_blob"] = blob
    doc.update(state=ACTIVE, format="zip", lastActivationTime=now_iso())
    ctx.store.put(VERSION, account, doc, parent=name, key=version)
    return doc


def delete_version(ctx: BatchContext, account: str, name: str, version: str) -> None:
    doc = get_version(ctx, account, name, version)
    _forget_version(ctx, account, name, doc)
    app = ctx.store.get(APP, account, name)
    if app is not None and str(app.get("defaultVersion") or "").lower() == version.lower():
        ctx.store.put(APP, account, {**app, "defaultVersion": None})


def _forget_version(ctx: BatchContext, account: str, name: str, doc: Doc) -> None:
    storage = ctx.packages
    if storage is not None:
        for blob in {doc.get("_blob"), doc.get("_next")} - {None}:
            storage.delete(account, str(doc["_container"]), str(blob))
    ctx.store.delete(VERSION, account, str(doc["version"]), parent=name)


# --- the data plane's view ------------------------------------------------------------------------


def summary(ctx: BatchContext, account: str, app: Doc) -> Doc:
    """ApplicationSummary: id, displayName, the versions a pool or task can use (the active ones)."""
    active = [str(v["version"]) for v in versions(ctx, account, str(app["id"])) if v.get("state") == ACTIVE]
    return {"id": app["id"], "displayName": app.get("displayName") or app["id"], "versions": active}


# --- references ---------------------------------------------------------------------------------


def _resolve_one(ctx: BatchContext, account: str, ref: Doc) -> Resolved | str:
    """The package a reference names, or why it names none."""
    name = application_id_of(str(ref.get("applicationId") or ""))
    app = ctx.store.get(APP, account, name)
    if app is None:
        return "The specified application does not exist."
    asked = ref.get("version")
    version = str(asked) if asked not in (None, "") else app.get("defaultVersion")
    if not version:
        return "No version was given and the application has no default version."
    doc = ctx.store.get(VERSION, account, str(version), parent=name)
    if doc is None:
        return "The specified application package does not exist."
    if doc.get("state") != ACTIVE:
        return "The specified application package is not active."
    return Resolved(str(app["id"]), None if asked in (None, "") else str(asked), str(doc["version"]),
                    str(doc["_container"]), str(doc["_blob"]))


def _label(ref: Doc) -> str:
    app = application_id_of(str(ref.get("applicationId") or ""))
    return f"{app}:{ref['version']}" if ref.get("version") else app


def check_pool_references(ctx: BatchContext, account: str, refs: list[Doc] | None) -> None:
    """A pool's references must all name active packages: 409 InvalidApplicationPackageReferences
    listing each bad one (``application:version`` -> why), as Azure answers."""
    bad = {}
    for ref in refs or []:
        found = _resolve_one(ctx, account, ref)
        if isinstance(found, str):
            bad[_label(ref)] = found
    if bad:
        raise e.InvalidApplicationPackageReferences(
            "One or more of the specified application package references are invalid.", bad)


def resolve(ctx: BatchContext, account: str, refs: list[Doc]) -> tuple[list[Resolved], str | None]:
    """The packages of a run (the pool's, then the task's); the first reference that names no active
    package is the run's failure message (a task with one fails before it starts, as on Azure)."""
    out: list[Resolved] = []
    for ref in refs:
        found = _resolve_one(ctx, account, ref)
        if isinstance(found, str):
            return out, f"{_label(ref)}: {found}"
        out.append(found)
    return out, None


def run_packages(ctx: BatchContext | None, account: str, pool: Doc | None,
                 own: list[Doc] | None = None) -> tuple[list[Doc], Doc | None]:
    """What a RunSpec carries for the packages of its pool and its own (plain dicts: they travel
    to Dask workers): applicationId, version, askedVersion (None: the default), directory, url
    (with a read SAS); and the run's failureInfo when a reference names no active package."""
    refs = [*((pool or {}).get("applicationPackageReferences") or []), *(own or [])]
    if not refs or ctx is None:
        return [], None
    resolved, problem = resolve(ctx, account, refs)
    storage = ctx.packages
    if problem is None and resolved and storage is None:
        problem = "Application packages need the Blob endpoint, which this server does not run."
    if problem is not None or storage is None:
        return [], ex.failure(ex.USER_ERROR, e.InvalidApplicationPackageReferences.code,
                              f"An application package reference is invalid: {problem}")
    return [{"applicationId": r.application_id, "version": r.version, "askedVersion": r.asked_version,
             "directory": r.directory(), "url": storage.read_url(account, r.container, r.blob)}
            for r in resolved], None
