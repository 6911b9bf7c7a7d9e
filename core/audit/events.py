"""What the audit ledger records: the action vocabulary and one immutable entry.

Pure: no storage, no clock. ``core.audit.chain`` builds and verifies entries and
``core.store.audit_log`` persists them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from core.types import JSONValue

__all__ = ["AuditAction", "AuditEntry"]


class AuditAction(StrEnum):
    """Every kind of event Vigil writes to the audit ledger.

    The values are stored and hashed, so a value is never renamed once released; add new
    members instead.
    """

    DATABASE_INITIALIZED = "database_initialized"
    SITE_ADDED = "site_added"
    USER_CREATED = "user_created"
    STUDY_INGESTED = "study_ingested"
    INGEST_REJECTED = "ingest_rejected"
    MODEL_REGISTERED = "model_registered"
    MODEL_SERVING_CHANGED = "model_serving_changed"
    PREDICTION_MADE = "prediction_made"
    #: The study is stored but was not scored because it is outside the model's intended use.
    PREDICTION_SKIPPED = "prediction_skipped"
    EXPLANATION_CREATED = "explanation_created"
    FEEDBACK_RECORDED = "feedback_recorded"
    ADJUDICATION_RECORDED = "adjudication_recorded"
    OUTCOMES_INGESTED = "outcomes_ingested"
    AUDIT_EXPORTED = "audit_exported"
    #: Sign-in attempts; a failed one records the name as typed and never whether it exists.
    LOGIN_SUCCEEDED = "login_succeeded"
    LOGIN_FAILED = "login_failed"
    PASSWORD_CHANGED = "password_changed"
    #: A reader was shown a stored explanation overlay (once per case visit).
    EXPLANATION_VIEWED = "explanation_viewed"
    #: Reference labels loaded from a ground-truth manifest (sample cohort), marked as such.
    GROUND_TRUTH_LOADED = "ground_truth_loaded"
    #: A pilot-drift report was computed (``vigil validate``); the payload holds the gate verdict.
    VALIDATION_REPORTED = "validation_reported"
    SITE_CALIBRATOR_FITTED = "site_calibrator_fitted"
    SITE_CALIBRATOR_APPROVED = "site_calibrator_approved"
    #: Drift monitoring (issue 6): an alarm or a metadata novelty became an alert; its lifecycle.
    ALERT_RAISED = "alert_raised"
    ALERT_ACKNOWLEDGED = "alert_acknowledged"
    ALERT_RESOLVED = "alert_resolved"
    #: Drift incidents (issue 21): a site's alerts of one family grouped into an incident; its lifecycle.
    INCIDENT_OPENED = "incident_opened"
    INCIDENT_ACKNOWLEDGED = "incident_acknowledged"
    INCIDENT_RESOLVED = "incident_resolved"
    #: Explanations (issue 4): a faithfulness/sanity report was stored for a model version;
    #: an explanation was exported as DICOM objects (the payload names their SOP Instance UIDs).
    EXPLAIN_REPORT_CREATED = "explain_report_created"
    EXPLANATION_EXPORTED = "explanation_exported"
    #: EMR outcomes (issue 13): stored evidence linked to studies that arrived after it (``vigil fhir relink``);
    #: an ingest of a FHIR payload is ``OUTCOMES_INGESTED``.
    EMR_RELINKED = "emr_relinked"
    #: Change control (issue 14): a tag added to a model version; studies locked into the hold-out;
    #: a challenger trained (its data manifest and hyperparameters); the hold-out read for a gate
    #: run; the gate's result; a promotion (with its electronic signature) and a rollback switch
    #: the serving version (``MODEL_SERVING_CHANGED`` is the switch of ``vigil init``).
    MODEL_TAGGED = "model_tagged"
    HOLDOUT_LOCKED = "holdout_locked"
    MODEL_TRAINED = "model_trained"
    HOLDOUT_USED = "holdout_used"
    CHANGE_VALIDATED = "change_validated"
    MODEL_PROMOTED = "model_promoted"
    MODEL_ROLLED_BACK = "model_rolled_back"
    SIGNATURE_FAILED = "signature_failed"
    #: A person signed in through the identity provider asked to sign (the act waits for their
    #: re-authentication there), or withdrew that request.
    SIGNATURE_REQUESTED = "signature_requested"
    SIGNATURE_WITHDRAWN = "signature_withdrawn"
    #: De-identification: a folder of DICOM files de-identified to the PS3.15 Basic Profile
    #: for leaving the site; the payload holds counts, the table's version and hash, never a path or PHI.
    DEID_EXPORTED = "deid_exported"
    #: PACS: a study's new instances were retrieved over DICOMweb and passed through the
    #: ingest gate (each stored instance has its ``STUDY_INGESTED`` entry, each refusal its
    #: ``INGEST_REJECTED``); objects Vigil made were sent to a PACS over STOW-RS.
    PACS_STUDY_PULLED = "pacs_study_pulled"
    PACS_PUSHED = "pacs_pushed"
    #: PACS status (issue 18): a site's DICOMweb connection was tested (the payload holds the
    #: result, never a secret); a push after a reader's verdict failed before the PACS stored anything.
    PACS_CHECKED = "pacs_checked"
    PACS_PUSH_FAILED = "pacs_push_failed"
    #: Federated training (issue 16): a site's update-signing key registered (the payload holds the
    #: public key's SHA-256); a run started; each round (the SHA-256 of every accepted update and of
    #: the aggregate); an update refused before aggregation (with the reason); a run ended
    #: (finished or failed closed).
    FL_SITE_KEY_REGISTERED = "fl_site_key_registered"
    FL_RUN_STARTED = "fl_run_started"
    FL_ROUND_AGGREGATED = "fl_round_aggregated"
    FL_UPDATE_REJECTED = "fl_update_rejected"
    FL_RUN_ENDED = "fl_run_ended"
    #: A run launched from the Federated page (the request and the launcher's process id).
    FL_RUN_LAUNCHED = "fl_run_launched"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One link of the hash chain (ARCHITECTURE.md, "The audit entry").

    Attributes
    ----------
    seq : int
        Position in the ledger, 0 for the first entry, consecutive after that.
    recorded_at : str
        UTC ISO-8601 timestamp, hashed exactly as written (e.g. ``"2024-05-01T09:30:00+00:00"``).
    actor : str
        Who did it: a username, or ``"system"`` for unattended work.
    action : AuditAction or str
        An :class:`AuditAction`. Entries read back from storage keep a value this version
        does not know as a plain ``str`` so that the chain can still be verified (and fail)
        instead of the reader crashing.
    subject : str
        What it was done to: a StudyInstanceUID, a model version, a site name, ...
    payload : Mapping of str to JSON values
        Details, as they survive canonical JSON (a copy; tuples become lists).
    prev_hash : str
        ``entry_hash`` of the previous entry, or 64 zeros for the first one (hex SHA-256).
    entry_hash : str
        Hex SHA-256 over every field above (see :func:`core.audit.chain.compute_entry_hash`).
    """

    seq: int
    recorded_at: str
    actor: str
    action: AuditAction | str
    subject: str
    payload: Mapping[str, JSONValue]
    prev_hash: str
    entry_hash: str
