"""Every custom exception Vigil raises, each with a message that names the bad value.

Two families matter to the command line: :class:`BadInputError` (exit code 2, nothing
written) and :class:`CheckFailedError` (exit code 1, a gate or a verification failed).
"""

from __future__ import annotations

__all__ = [
    "VigilError",
    "BadInputError",
    "CheckFailedError",
    "PathNotFoundError",
    "UnknownSiteError",
    "UnknownStudyError",
    "UnknownModelVersionError",
    "DuplicateSiteError",
    "DicomRejectedError",
    "WeightsIntegrityError",
    "ModelTamperedError",
    "ServingVersionChangedError",
    "DeploymentRefusedError",
    "SignatureFailedError",
    "InvalidTagError",
    "UnknownValidationError",
    "DatabaseURLError",
    "OutsideIntendedUseError",
    "UnknownMethodError",
    "AuditChainError",
    "UnknownAuditEntryError",
    "AuditEntryNotCheckpointedError",
    "AuditKeyError",
    "ConfigError",
    "DuplicateModelContentError",
    "DuplicateModelVersionError",
    "DuplicateUserError",
    "UnknownUserError",
    "PermissionDeniedError",
    "SignInFailedError",
    "SignInThrottledError",
    "WeakPasswordError",
    "UnknownRoleError",
    "PixelsUnreadableError",
    "FeedbackConflictError",
    "UndefinedMetricWarning",
    "EmptySampleError",
    "UnknownCalibratorError",
    "CalibratorStateError",
    "UnknownAlertError",
    "AlertTransitionError",
    "UnknownIncidentError",
    "IncidentTransitionError",
    "UnusablePathError",
    "OutOfRangeError",
    "FhirUrlError",
    "FhirServerError",
    "FhirAuthError",
    "FhirPayloadError",
    "PseudonymKeyError",
    "ChangePlanError",
    "NoModificationError",
    "HoldoutLeakError",
    "PacsConfigError",
    "PacsServerError",
    "PacsUnreachableError",
    "PacsAuthError",
]


class VigilError(Exception):
    """Base of every error Vigil raises on purpose."""


class BadInputError(VigilError):
    """The caller gave a value Vigil cannot use; nothing was written."""


class CheckFailedError(VigilError):
    """A gate or a verification ran and failed."""


class ConfigError(BadInputError):
    """A configuration value is missing or malformed."""


class PathNotFoundError(BadInputError):
    """A path given on the command line or in configuration does not exist."""

    def __init__(self, path: object) -> None:
        super().__init__(f"path not found: {path}")
        self.path = path


class UnknownSiteError(BadInputError):
    """A site name that was never registered with ``vigil site add``."""

    def __init__(self, site: str) -> None:
        super().__init__(f"unknown site: {site!r} (register it with `vigil site add {site}`)")
        self.site = site


class DuplicateSiteError(BadInputError):
    """A site name that is already registered."""

    def __init__(self, site: str) -> None:
        super().__init__(f"site already registered: {site!r}")
        self.site = site


class UnknownStudyError(BadInputError):
    """A StudyInstanceUID that is not in the store."""

    def __init__(self, study_uid: str) -> None:
        super().__init__(f"unknown study: {study_uid!r}")
        self.study_uid = study_uid


class UnknownModelVersionError(BadInputError):
    """A model version that is not registered."""

    def __init__(self, version: str) -> None:
        super().__init__(f"unknown model version: {version!r}")
        self.version = version


class UnknownMethodError(BadInputError):
    """An explanation (or other) method name that Vigil does not provide."""

    def __init__(self, method: str, choices: tuple[str, ...]) -> None:
        super().__init__(f"unknown method: {method!r} (choose one of {', '.join(choices)})")
        self.method = method


class DicomRejectedError(BadInputError):
    """A file failed the ingest gate; ``reason`` is one sentence naming the problem."""

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class WeightsIntegrityError(BadInputError):
    """A weights file whose SHA-256 does not match its model card, or that cannot be read."""

    def __init__(self, path: object, detail: str) -> None:
        super().__init__(f"weights file {path}: {detail}")
        self.path = path


class ModelTamperedError(BadInputError):
    """A registered model version whose stored record no longer matches its content address."""

    def __init__(self, version: str, detail: str) -> None:
        super().__init__(f"model version {version!r} was changed after registration and is refused: {detail}")
        self.version = version


class ServingVersionChangedError(VigilError):
    """The serving model version changed while work scored with the previous one (not stored)."""

    def __init__(self, version: str) -> None:
        super().__init__(f"model version {version!r} stopped serving while this batch was scored; it was not stored")
        self.version = version


class DatabaseURLError(BadInputError):
    """A database URL that cannot be parsed or connected to."""

    def __init__(self, url: str, detail: str) -> None:
        super().__init__(f"cannot use database URL {url!r}: {detail}")
        self.url = url


class OutsideIntendedUseError(VigilError):
    """A study outside the model card's intended use; it is stored but never scored."""

    def __init__(self, study_uid: str, reason: str) -> None:
        super().__init__(f"study {study_uid} is outside the model's intended use: {reason}")
        self.study_uid = study_uid
        self.reason = reason


class AuditChainError(CheckFailedError):
    """The audit chain does not verify; ``seq`` is the first bad entry."""

    def __init__(self, seq: int | None, reason: str) -> None:
        super().__init__(f"audit chain broken at seq {seq}: {reason}")
        self.seq = seq
        self.reason = reason


class UnknownAuditEntryError(BadInputError):
    """No audit entry has this ``seq``."""

    def __init__(self, seq: int, size: int) -> None:
        super().__init__(f"no audit entry with seq {seq}: the ledger holds seq 0 to {size - 1}")
        self.seq = seq
        self.size = size


class AuditEntryNotCheckpointedError(BadInputError):
    """The entry exists but no signed checkpoint covers it yet, so there is no root to prove it against."""

    def __init__(self, seq: int, checkpointed: int) -> None:
        super().__init__(
            f"audit entry seq {seq} is not yet covered by a checkpoint (checkpoints cover {checkpointed} entries); "
            "run `vigil audit checkpoint` first"
        )
        self.seq = seq
        self.checkpointed = checkpointed


class AuditKeyError(ConfigError):
    """The audit signing or public key file is unusable (wrong size, not a file); its bytes are never shown."""

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"audit key {path}: {reason}")
        self.path = path
        self.reason = reason


class DuplicateModelContentError(BadInputError):
    """The same model content (card and weights) is already registered under another name."""

    def __init__(self, version: str, existing: str, address: str) -> None:
        super().__init__(
            f"model version {version!r} has the same content as registered version {existing!r} "
            f"(content address {address[:16]}...): register it once"
        )
        self.version, self.existing, self.address = version, existing, address


class DuplicateModelVersionError(BadInputError):
    """A model version name that is already registered; a changed model needs a new version."""

    def __init__(self, version: str) -> None:
        super().__init__(f"model version already registered: {version!r}")
        self.version = version


class DuplicateUserError(BadInputError):
    """A username that is already taken."""

    def __init__(self, username: str) -> None:
        super().__init__(f"user already exists: {username!r}")
        self.username = username


class UnknownUserError(BadInputError):
    """A username that does not exist."""

    def __init__(self, username: str) -> None:
        super().__init__(f"unknown user: {username!r}")
        self.username = username


class PermissionDeniedError(BadInputError):
    """A signed-in user asked for an action their role does not allow; nothing was done."""

    def __init__(self, username: str, role: str, permission: str) -> None:
        super().__init__(f"user {username!r} (role {role!r}) may not {permission.replace('_', ' ')}")
        self.username = username
        self.role = role
        self.permission = permission


class SignInFailedError(BadInputError):
    """Wrong username or password; the message never says which, so it cannot probe for accounts."""

    def __init__(self) -> None:
        super().__init__("sign-in failed: unknown username or wrong password")


class SignInThrottledError(BadInputError):
    """Too many failed sign-ins for the typed username or the client address: refused unchecked for a while."""

    def __init__(self, wait_s: int) -> None:
        super().__init__(f"too many failed sign-ins: try again in {wait_s} s")
        self.wait_s = wait_s


class WeakPasswordError(BadInputError):
    """A new password that does not meet the password policy (the password itself is never shown)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"password refused: {reason}")
        self.reason = reason


class UnknownRoleError(BadInputError):
    """A role name that Vigil does not define."""

    def __init__(self, role: str, choices: tuple[str, ...]) -> None:
        super().__init__(f"unknown role: {role!r} (choose one of {', '.join(choices)})")
        self.role = role


class PixelsUnreadableError(BadInputError):
    """A stored study whose image can no longer be read or decoded; the rest of the store is fine."""

    def __init__(self, study_uid: str, reason: str) -> None:
        super().__init__(f"the image of study {study_uid} cannot be read: {reason}")
        self.study_uid = study_uid
        self.reason = reason


class FeedbackConflictError(BadInputError):
    """Feedback that contradicts what is stored: a reused idempotency key or a stale correction."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"feedback not saved: {detail}")
        self.detail = detail


class UndefinedMetricWarning(UserWarning):
    """A metric is undefined for the data given (one class, no cases at the threshold); its value is NaN."""


class EmptySampleError(BadInputError):
    """A metric or report was asked for on no cases at all (an empty site or stratum)."""

    def __init__(self, what: str) -> None:
        super().__init__(f"no cases: {what}")
        self.what = what


class UnknownCalibratorError(BadInputError):
    """A site calibrator id that is not stored."""

    def __init__(self, calibrator_id: int) -> None:
        super().__init__(f"unknown site calibrator: {calibrator_id!r}")
        self.calibrator_id = calibrator_id


class CalibratorStateError(BadInputError):
    """A site calibrator asked to change state in a way its lifecycle forbids (e.g. approve twice)."""

    def __init__(self, calibrator_id: int, status: str, wanted: str) -> None:
        super().__init__(f"site calibrator {calibrator_id} is {status!r}; cannot {wanted}")
        self.calibrator_id = calibrator_id
        self.status = status


class UnknownAlertError(BadInputError):
    """A drift alert id that is not stored."""

    def __init__(self, alert_id: int) -> None:
        super().__init__(f"unknown drift alert: {alert_id!r}")
        self.alert_id = alert_id


class AlertTransitionError(BadInputError):
    """A drift alert asked to move along its lifecycle in a way it forbids (e.g. acknowledge a resolved one)."""

    def __init__(self, alert_id: int, status: str, wanted: str) -> None:
        super().__init__(f"drift alert {alert_id} is {status!r}; it cannot become {wanted!r}")
        self.alert_id = alert_id
        self.status = status
        self.wanted = wanted


class UnknownIncidentError(BadInputError):
    """A drift incident id that is not stored."""

    def __init__(self, incident_id: int) -> None:
        super().__init__(f"unknown drift incident: {incident_id!r}")
        self.incident_id = incident_id


class IncidentTransitionError(BadInputError):
    """A drift incident asked to move along its lifecycle in a way it forbids (e.g. acknowledge a resolved one)."""

    def __init__(self, incident_id: int, status: str, wanted: str) -> None:
        super().__init__(f"drift incident {incident_id} is {status!r}; it cannot become {wanted!r}")
        self.incident_id = incident_id
        self.status = status
        self.wanted = wanted


class UnusablePathError(BadInputError):
    """A path that exists but cannot serve as asked: a file where a folder is needed, a device, an unwritable place."""

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"cannot use {path}: {reason}")
        self.path = path
        self.reason = reason


class OutOfRangeError(BadInputError):
    """A count or other number outside the range Vigil accepts for it (checked before any work)."""

    def __init__(self, name: str, value: object, low: int, high: int) -> None:
        super().__init__(f"{name} must be from {low} to {high}, got {value!r}")
        self.name = name
        self.value = value
        self.low = low
        self.high = high


class FhirUrlError(BadInputError):
    """A FHIR server address Vigil will not call: not http(s), no host, or a link that leaves the server."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot use FHIR URL {url!r}: {reason}")
        self.url = url
        self.reason = reason


class FhirServerError(BadInputError):
    """A FHIR server answered with something Vigil cannot use (an error status after retries, a wrong type, too big).

    ``url`` never carries a credential (the bearer token travels in a header) and patient search
    values in it are masked.
    """

    def __init__(self, url: str, detail: str, status: int | None = None) -> None:
        where = f"HTTP {status} from {url}" if status is not None else url
        super().__init__(f"FHIR server error: {where}: {detail}")
        self.url = url
        self.detail = detail
        self.status = status


class FhirAuthError(FhirServerError):
    """The FHIR server refused the bearer token (401 again after re-reading it, or 403); the token is never shown."""


class FhirPayloadError(BadInputError):
    """A FHIR payload Vigil will not read, nothing of it written.

    Bad bytes or JSON, a resource type or Bundle.type Vigil does not read, or any bad entry of a
    transaction bundle (rejected whole).

    ``path`` is the FHIRPath-like place of the fault (``entry[7].resource.status``, ``line[12].status``),
    empty when the fault is the payload as a whole.
    """

    def __init__(self, name: str, path: str, reason: str) -> None:
        where = f"{name}: {path}" if path else name
        super().__init__(f"bad FHIR payload {where}: {reason}")
        self.name = name
        self.path = path
        self.reason = reason


class PseudonymKeyError(ConfigError):
    """The site's pseudonym key file is unusable (wrong size, not a regular file); its bytes are never shown."""

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"pseudonym key {path}: {reason}")
        self.path = path
        self.reason = reason


class ChangePlanError(BadInputError):
    """A change-control plan file (PCCP) Vigil will not use: unreadable, not TOML, or a bad key or value.

    ``key`` is the dotted place of the fault (``acceptance.max_ece``), empty when the fault is the
    file as a whole.
    """

    def __init__(self, source: str, key: str, reason: str) -> None:
        where = f"{source}: {key}" if key else source
        super().__init__(f"change-control plan {where}: {reason}")
        self.source = source
        self.key = key
        self.reason = reason


class NoModificationError(BadInputError):
    """A challenger model card that differs from the champion in nothing a change-control gate judges."""

    def __init__(self, challenger: str, champion: str) -> None:
        super().__init__(
            f"challenger {challenger!r} has the champion's ({champion!r}) weights and threshold: nothing to validate"
        )
        self.challenger = challenger
        self.champion = champion


class HoldoutLeakError(BadInputError):
    """Fine-tuning data that holds studies of the locked hold-out; nothing was read or trained.

    A hold-out study a challenger was trained or tuned on no longer measures it (FDA change control:
    the locked hold-out stays unseen until the gate).
    """

    def __init__(self, study_uid: str, count: int) -> None:
        super().__init__(
            f"{count} training or validation studies are in the locked hold-out set, the first {study_uid!r}: "
            "remove them before fine-tuning"
        )
        self.study_uid = study_uid
        self.count = count


class DeploymentRefusedError(BadInputError):
    """A promotion or rollback that cannot happen as asked; nothing was switched."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"nothing switched: {detail}")


class SignatureFailedError(BadInputError):
    """An electronic signature whose password did not verify, or whose signer may not approve."""

    def __init__(self, signer: str, detail: str) -> None:
        super().__init__(f"electronic signature by {signer!r} refused: {detail}; nothing switched")
        self.signer = signer


class InvalidTagError(BadInputError):
    """A model tag that is empty, too long or holds characters a tag may not."""

    def __init__(self, tag: str, detail: str) -> None:
        super().__init__(f"invalid tag {tag!r}: {detail}")
        self.tag = tag


class UnknownValidationError(BadInputError):
    """A change-control gate run id that does not exist."""

    def __init__(self, validation_id: int) -> None:
        super().__init__(f"unknown change-control validation: {validation_id}")
        self.validation_id = validation_id


class PacsConfigError(ConfigError):
    """A site's PACS endpoint that Vigil cannot use: not configured, a bad value, or its secret missing.

    A secret is named by the environment variable that should hold it, never shown.
    """

    def __init__(self, site: str, reason: str) -> None:
        super().__init__(f"PACS of site {site!r}: {reason}")
        self.site = site
        self.reason = reason


class PacsServerError(BadInputError):
    """A DICOMweb server answered with something Vigil cannot use (an error status after retries, a bad body).

    ``endpoint`` is the service's base URL, which never carries a credential.
    """

    def __init__(self, endpoint: str, detail: str, status: int | None = None) -> None:
        where = f"HTTP {status} from {endpoint}" if status is not None else endpoint
        super().__init__(f"PACS error: {where}: {detail}")
        self.endpoint = endpoint
        self.detail = detail
        self.status = status


class PacsUnreachableError(PacsServerError):
    """No answer from a DICOMweb server (refused, reset or timed out) after every retry."""

    def __init__(self, endpoint: str, attempts: int, detail: str) -> None:
        super().__init__(endpoint, f"unreachable after {attempts} attempt(s): {detail}")
        self.attempts = attempts


class PacsAuthError(PacsServerError):
    """A DICOMweb server refused Vigil's credentials (401 or 403); the credentials are never shown."""
