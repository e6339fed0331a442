"""SQLAlchemy tables, one module per aggregate. Models hold columns, not behaviour; the
queries that read and write them live with the room that owns the entity."""
from .audit import Audit
from .base import iso, utcnow
from .blobs import Blob
from .exports import EXPORT_STATES, ExportJob
from .forms import FORM_STATES, Form, FormMedia, FormVersion
from .indicators import IndicatorMember, IndicatorSource, IndicatorValue, JobLock, ReconcileRun, Target
from .programme import Grantee, Project, Rayon, Region
from .records import (Assessment, DuplicateCandidate, Event, Interview, Participant, PendingPersonMatch,
                      PendingRecord, Person, Service)
from .submissions import HOLDS, REVIEW_STATES, Comment, Submission, SubmissionAttachment, SubmissionDef
from .users import ROLES, AppUser, LoginAttempt, Session, WebUser

__all__ = ["Audit", "Blob", "EXPORT_STATES", "ExportJob", "LoginAttempt", "Form", "FormMedia", "FormVersion", "FORM_STATES", "Grantee", "HOLDS", "Project",
           "Rayon", "Region", "ROLES", "REVIEW_STATES", "Comment", "Submission",
           "SubmissionAttachment", "SubmissionDef", "Assessment", "DuplicateCandidate", "Event",
           "Interview", "Participant", "PendingPersonMatch", "PendingRecord", "Person", "Service", "IndicatorMember",
           "IndicatorSource", "IndicatorValue", "JobLock", "ReconcileRun", "Target", "AppUser", "Session", "WebUser", "iso", "utcnow"]
