"""Marshmallow schemas of the JSON API: what requests must carry (validated on the way in)
and what responses carry (documented in /openapi.json). One schema, both uses."""
from marshmallow import INCLUDE, Schema, fields, validate


class Open(Schema):
    """Responses may grow fields; clients must ignore what they do not know (as with Central)."""
    class Meta:
        unknown = INCLUDE


Str = lambda **kw: fields.String(allow_none=True, **kw)  # noqa: E731
Int = lambda **kw: fields.Integer(allow_none=True, **kw)  # noqa: E731


class Problem(Open):
    code = fields.Float(required=True)
    message = fields.String(required=True)
    details = fields.Dict()


class SessionCreate(Schema):
    email = fields.String(required=True, validate=validate.Length(min=1, max=320))
    password = fields.String(required=True, validate=validate.Length(min=1, max=1024))


class SessionOut(Open):
    token = fields.String(required=True)
    createdAt = fields.String(required=True)
    expiresAt = fields.String(required=True)


class Success(Open):
    success = fields.Boolean(required=True)


class User(Open):
    id = fields.Integer(required=True)
    email = fields.String(required=True)
    displayName = fields.String(required=True)
    role = fields.String(required=True)
    grantee = Str()
    createdAt = fields.String(required=True)


class Grantee(Open):
    code = fields.String(required=True)
    name = fields.String(required=True)
    region = fields.String(required=True)
    createdAt = fields.String(required=True)


class Project(Open):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    createdAt = fields.String(required=True)
    archived = fields.Boolean()


class Form(Open):
    projectId = fields.Integer(required=True)
    xmlFormId = fields.String(required=True)
    name = Str(required=True)
    version = fields.String(required=True)
    hash = Str(required=True)
    state = fields.String(required=True, validate=validate.OneOf(["open", "closing", "closed"]))
    enketoId = Str(required=True)
    keyId = Str(required=True)
    createdAt = fields.String(required=True)
    updatedAt = Str(required=True)
    publishedAt = Str(required=True)


class Version(Open):
    instanceId = fields.String(required=True)
    instanceName = Str()
    submitterId = Int()
    deviceId = Str()
    userAgent = Str()
    deprecatedId = Str()
    formVersion = fields.String()
    createdAt = fields.String(required=True)
    current = fields.Boolean()


class Submission(Open):
    instanceId = fields.String(required=True)
    submitterId = Int(required=True)
    deviceId = Str()
    userAgent = Str()
    reviewState = Str(validate=validate.OneOf(["hasIssues", "edited", "approved", "rejected"]))
    grantee = Str()
    hold = Str(validate=validate.OneOf(["grantee", "edited_after_rejection"]))
    createdAt = fields.String(required=True)
    updatedAt = Str()
    deletedAt = Str()
    currentVersion = fields.Nested(Version, allow_none=True)


class ReviewUpdate(Schema):
    """A coordinator's decision: a review state, which grantee it counts for, or both."""
    reviewState = fields.String(validate=validate.OneOf(
        ["received", "hasIssues", "edited", "approved", "rejected"]))
    grantee = fields.String()


class Attachment(Open):
    name = fields.String(required=True)
    exists = fields.Boolean(required=True)


class CommentCreate(Schema):
    body = fields.String(required=True, validate=validate.Length(min=1, max=10000))


class Comment(Open):
    id = fields.Integer(required=True)
    body = fields.String(required=True)
    actorId = Int(required=True)
    system = fields.Boolean()
    createdAt = fields.String(required=True)


class AuditEntry(Open):
    action = fields.String(required=True)
    actorId = Int()
    details = fields.Dict()
    loggedAt = fields.String(required=True)


class DataValue(Open):
    dataElement = fields.String(required=True)
    period = fields.String(required=True)
    orgUnit = fields.String(required=True)
    categoryOptionCombo = fields.String(required=True)
    value = fields.String(required=True)
    target = Str()
    percentAchieved = fields.Float(allow_none=True)


class DataValueSet(Open):
    dataValues = fields.List(fields.Nested(DataValue), required=True)


class Indicator(Open):
    id = fields.String(required=True)
    name = fields.Dict(required=True)
    kind = fields.String(required=True)


class TargetPut(Schema):
    grantee = fields.String(required=True)
    indicator = fields.String(required=True)
    period = fields.String(load_default="")
    value = fields.Float(required=True, validate=validate.Range(min=0))


class Target(Open):
    grantee = fields.String(required=True)
    indicator = fields.String(required=True)
    period = fields.String(required=True)
    value = fields.Float(required=True)


class DuplicateDecision(Schema):
    decision = fields.String(required=True, validate=validate.OneOf(["merge", "not_duplicate"]))


class Candidate(Open):
    id = fields.Integer(required=True)
    kind = fields.String(required=True)
    score = fields.Float(required=True)
    reason = fields.String(required=True)
    status = fields.String(required=True)
    a = fields.Dict(required=True)
    b = fields.Dict(required=True)


class Health(Open):
    status = fields.String(required=True)
    database = fields.String(required=True)


class ODataDocument(Open):
    value = fields.List(fields.Dict(), required=True)
