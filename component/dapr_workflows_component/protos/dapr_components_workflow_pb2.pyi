import datetime

from . import dapr_components_pb2 as _dapr_components_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import wrappers_pb2 as _wrappers_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WorkflowRuntimeStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WORKFLOW_RUNTIME_STATUS_UNSPECIFIED: _ClassVar[WorkflowRuntimeStatus]
    WORKFLOW_RUNTIME_STATUS_RUNNING: _ClassVar[WorkflowRuntimeStatus]
    WORKFLOW_RUNTIME_STATUS_COMPLETED: _ClassVar[WorkflowRuntimeStatus]
    WORKFLOW_RUNTIME_STATUS_CONTINUED_AS_NEW: _ClassVar[WorkflowRuntimeStatus]
    WORKFLOW_RUNTIME_STATUS_FAILED: _ClassVar[WorkflowRuntimeStatus]
    WORKFLOW_RUNTIME_STATUS_CANCELED: _ClassVar[WorkflowRuntimeStatus]
    WORKFLOW_RUNTIME_STATUS_TERMINATED: _ClassVar[WorkflowRuntimeStatus]
    WORKFLOW_RUNTIME_STATUS_PENDING: _ClassVar[WorkflowRuntimeStatus]
    WORKFLOW_RUNTIME_STATUS_SUSPENDED: _ClassVar[WorkflowRuntimeStatus]
    WORKFLOW_RUNTIME_STATUS_STALLED: _ClassVar[WorkflowRuntimeStatus]
WORKFLOW_RUNTIME_STATUS_UNSPECIFIED: WorkflowRuntimeStatus
WORKFLOW_RUNTIME_STATUS_RUNNING: WorkflowRuntimeStatus
WORKFLOW_RUNTIME_STATUS_COMPLETED: WorkflowRuntimeStatus
WORKFLOW_RUNTIME_STATUS_CONTINUED_AS_NEW: WorkflowRuntimeStatus
WORKFLOW_RUNTIME_STATUS_FAILED: WorkflowRuntimeStatus
WORKFLOW_RUNTIME_STATUS_CANCELED: WorkflowRuntimeStatus
WORKFLOW_RUNTIME_STATUS_TERMINATED: WorkflowRuntimeStatus
WORKFLOW_RUNTIME_STATUS_PENDING: WorkflowRuntimeStatus
WORKFLOW_RUNTIME_STATUS_SUSPENDED: WorkflowRuntimeStatus
WORKFLOW_RUNTIME_STATUS_STALLED: WorkflowRuntimeStatus

class WorkflowInitRequest(_message.Message):
    __slots__ = ("metadata",)
    METADATA_FIELD_NUMBER: _ClassVar[int]
    metadata: _dapr_components_pb2.MetadataRequest
    def __init__(self, metadata: _Optional[_Union[_dapr_components_pb2.MetadataRequest, _Mapping]] = ...) -> None: ...

class WorkflowInitResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WorkflowStartRequest(_message.Message):
    __slots__ = ("workflow_name", "instance_id", "input", "scheduled_start_time")
    WORKFLOW_NAME_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    SCHEDULED_START_TIME_FIELD_NUMBER: _ClassVar[int]
    workflow_name: str
    instance_id: str
    input: bytes
    scheduled_start_time: _timestamp_pb2.Timestamp
    def __init__(self, workflow_name: _Optional[str] = ..., instance_id: _Optional[str] = ..., input: _Optional[bytes] = ..., scheduled_start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class WorkflowStartResponse(_message.Message):
    __slots__ = ("instance_id",)
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    def __init__(self, instance_id: _Optional[str] = ...) -> None: ...

class WorkflowGetRequest(_message.Message):
    __slots__ = ("instance_id",)
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    def __init__(self, instance_id: _Optional[str] = ...) -> None: ...

class WorkflowGetResponse(_message.Message):
    __slots__ = ("instance_id", "workflow_name", "created_at", "last_updated_at", "runtime_status", "properties")
    class PropertiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_NAME_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_STATUS_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    workflow_name: str
    created_at: _timestamp_pb2.Timestamp
    last_updated_at: _timestamp_pb2.Timestamp
    runtime_status: WorkflowRuntimeStatus
    properties: _containers.ScalarMap[str, str]
    def __init__(self, instance_id: _Optional[str] = ..., workflow_name: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., runtime_status: _Optional[_Union[WorkflowRuntimeStatus, str]] = ..., properties: _Optional[_Mapping[str, str]] = ...) -> None: ...

class WorkflowTerminateRequest(_message.Message):
    __slots__ = ("instance_id", "output", "recursive")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    RECURSIVE_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    output: bytes
    recursive: _wrappers_pb2.BoolValue
    def __init__(self, instance_id: _Optional[str] = ..., output: _Optional[bytes] = ..., recursive: _Optional[_Union[_wrappers_pb2.BoolValue, _Mapping]] = ...) -> None: ...

class WorkflowTerminateResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WorkflowRaiseEventRequest(_message.Message):
    __slots__ = ("instance_id", "event_name", "event_data")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_NAME_FIELD_NUMBER: _ClassVar[int]
    EVENT_DATA_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    event_name: str
    event_data: bytes
    def __init__(self, instance_id: _Optional[str] = ..., event_name: _Optional[str] = ..., event_data: _Optional[bytes] = ...) -> None: ...

class WorkflowRaiseEventResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WorkflowPauseRequest(_message.Message):
    __slots__ = ("instance_id", "reason")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    reason: str
    def __init__(self, instance_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class WorkflowPauseResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WorkflowResumeRequest(_message.Message):
    __slots__ = ("instance_id", "reason")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    reason: str
    def __init__(self, instance_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class WorkflowResumeResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WorkflowPurgeRequest(_message.Message):
    __slots__ = ("instance_id", "recursive")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    RECURSIVE_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    recursive: _wrappers_pb2.BoolValue
    def __init__(self, instance_id: _Optional[str] = ..., recursive: _Optional[_Union[_wrappers_pb2.BoolValue, _Mapping]] = ...) -> None: ...

class WorkflowPurgeResponse(_message.Message):
    __slots__ = ("deleted_instance_count",)
    DELETED_INSTANCE_COUNT_FIELD_NUMBER: _ClassVar[int]
    deleted_instance_count: int
    def __init__(self, deleted_instance_count: _Optional[int] = ...) -> None: ...

class WorkflowListRequest(_message.Message):
    __slots__ = ("page_size", "continuation_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    CONTINUATION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    continuation_token: str
    def __init__(self, page_size: _Optional[int] = ..., continuation_token: _Optional[str] = ...) -> None: ...

class WorkflowListResponse(_message.Message):
    __slots__ = ("instance_ids", "continuation_token")
    INSTANCE_IDS_FIELD_NUMBER: _ClassVar[int]
    CONTINUATION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    instance_ids: _containers.RepeatedScalarFieldContainer[str]
    continuation_token: str
    def __init__(self, instance_ids: _Optional[_Iterable[str]] = ..., continuation_token: _Optional[str] = ...) -> None: ...

class WorkflowHistoryRequest(_message.Message):
    __slots__ = ("instance_id",)
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    def __init__(self, instance_id: _Optional[str] = ...) -> None: ...

class WorkflowHistoryEvent(_message.Message):
    __slots__ = ("type", "data")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    type: str
    data: bytes
    def __init__(self, type: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class WorkflowHistoryResponse(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[WorkflowHistoryEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[WorkflowHistoryEvent, _Mapping]]] = ...) -> None: ...
