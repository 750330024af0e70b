import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DataKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DATA_KIND_UNSPECIFIED: _ClassVar[DataKind]
    DATA_KIND_BYTES: _ClassVar[DataKind]
    DATA_KIND_TEXT: _ClassVar[DataKind]
    DATA_KIND_JSON: _ClassVar[DataKind]

class Backend(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BACKEND_UNSPECIFIED: _ClassVar[Backend]
    BACKEND_GCS: _ClassVar[Backend]
    BACKEND_LOCAL: _ClassVar[Backend]

class VerifyTier(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERIFY_TIER_UNSPECIFIED: _ClassVar[VerifyTier]
    VERIFY_TIER_LOCAL: _ClassVar[VerifyTier]
    VERIFY_TIER_DISK_CACHE: _ClassVar[VerifyTier]
    VERIFY_TIER_GCS: _ClassVar[VerifyTier]

class VerifyProblem(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERIFY_PROBLEM_UNSPECIFIED: _ClassVar[VerifyProblem]
    VERIFY_PROBLEM_CORRUPT: _ClassVar[VerifyProblem]
    VERIFY_PROBLEM_ORPHAN: _ClassVar[VerifyProblem]
    VERIFY_PROBLEM_UNCHECKED: _ClassVar[VerifyProblem]
DATA_KIND_UNSPECIFIED: DataKind
DATA_KIND_BYTES: DataKind
DATA_KIND_TEXT: DataKind
DATA_KIND_JSON: DataKind
BACKEND_UNSPECIFIED: Backend
BACKEND_GCS: Backend
BACKEND_LOCAL: Backend
VERIFY_TIER_UNSPECIFIED: VerifyTier
VERIFY_TIER_LOCAL: VerifyTier
VERIFY_TIER_DISK_CACHE: VerifyTier
VERIFY_TIER_GCS: VerifyTier
VERIFY_PROBLEM_UNSPECIFIED: VerifyProblem
VERIFY_PROBLEM_CORRUPT: VerifyProblem
VERIFY_PROBLEM_ORPHAN: VerifyProblem
VERIFY_PROBLEM_UNCHECKED: VerifyProblem

class ObjectInfo(_message.Message):
    __slots__ = ("key", "kind", "size", "stored_size", "content_type", "metadata", "generation", "crc32c", "compressed", "encrypted", "backend", "pending_replication", "created_at", "updated_at", "expires_at", "cached_copy")
    KEY_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    STORED_SIZE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    CRC32C_FIELD_NUMBER: _ClassVar[int]
    COMPRESSED_FIELD_NUMBER: _ClassVar[int]
    ENCRYPTED_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    PENDING_REPLICATION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    CACHED_COPY_FIELD_NUMBER: _ClassVar[int]
    key: str
    kind: DataKind
    size: int
    stored_size: int
    content_type: str
    metadata: _struct_pb2.Struct
    generation: int
    crc32c: int
    compressed: bool
    encrypted: bool
    backend: Backend
    pending_replication: bool
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    cached_copy: bool
    def __init__(self, key: _Optional[str] = ..., kind: _Optional[_Union[DataKind, str]] = ..., size: _Optional[int] = ..., stored_size: _Optional[int] = ..., content_type: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., generation: _Optional[int] = ..., crc32c: _Optional[int] = ..., compressed: _Optional[bool] = ..., encrypted: _Optional[bool] = ..., backend: _Optional[_Union[Backend, str]] = ..., pending_replication: _Optional[bool] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cached_copy: _Optional[bool] = ...) -> None: ...

class StoreRequest(_message.Message):
    __slots__ = ("key", "data", "kind", "content_type", "metadata", "if_generation_match", "expires_at")
    KEY_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    IF_GENERATION_MATCH_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    key: str
    data: bytes
    kind: DataKind
    content_type: str
    metadata: _struct_pb2.Struct
    if_generation_match: int
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, key: _Optional[str] = ..., data: _Optional[bytes] = ..., kind: _Optional[_Union[DataKind, str]] = ..., content_type: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., if_generation_match: _Optional[int] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class StoreResponse(_message.Message):
    __slots__ = ("object",)
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    object: ObjectInfo
    def __init__(self, object: _Optional[_Union[ObjectInfo, _Mapping]] = ...) -> None: ...

class StoreStreamRequest(_message.Message):
    __slots__ = ("header", "chunk", "trailer")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    TRAILER_FIELD_NUMBER: _ClassVar[int]
    header: StoreStreamHeader
    chunk: bytes
    trailer: StoreStreamTrailer
    def __init__(self, header: _Optional[_Union[StoreStreamHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ..., trailer: _Optional[_Union[StoreStreamTrailer, _Mapping]] = ...) -> None: ...

class StoreStreamHeader(_message.Message):
    __slots__ = ("key", "kind", "content_type", "metadata", "size", "if_generation_match", "expires_at", "upload_id", "write_offset")
    KEY_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    IF_GENERATION_MATCH_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    WRITE_OFFSET_FIELD_NUMBER: _ClassVar[int]
    key: str
    kind: DataKind
    content_type: str
    metadata: _struct_pb2.Struct
    size: int
    if_generation_match: int
    expires_at: _timestamp_pb2.Timestamp
    upload_id: str
    write_offset: int
    def __init__(self, key: _Optional[str] = ..., kind: _Optional[_Union[DataKind, str]] = ..., content_type: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., size: _Optional[int] = ..., if_generation_match: _Optional[int] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., upload_id: _Optional[str] = ..., write_offset: _Optional[int] = ...) -> None: ...

class StoreStreamTrailer(_message.Message):
    __slots__ = ("crc32c", "size")
    CRC32C_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    crc32c: int
    size: int
    def __init__(self, crc32c: _Optional[int] = ..., size: _Optional[int] = ...) -> None: ...

class StoreStreamResponse(_message.Message):
    __slots__ = ("object",)
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    object: ObjectInfo
    def __init__(self, object: _Optional[_Union[ObjectInfo, _Mapping]] = ...) -> None: ...

class RetrieveRequest(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: str
    def __init__(self, key: _Optional[str] = ...) -> None: ...

class RetrieveResponse(_message.Message):
    __slots__ = ("object", "data")
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    object: ObjectInfo
    data: bytes
    def __init__(self, object: _Optional[_Union[ObjectInfo, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class RetrieveStreamRequest(_message.Message):
    __slots__ = ("key", "offset", "limit", "if_generation_match")
    KEY_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    IF_GENERATION_MATCH_FIELD_NUMBER: _ClassVar[int]
    key: str
    offset: int
    limit: int
    if_generation_match: int
    def __init__(self, key: _Optional[str] = ..., offset: _Optional[int] = ..., limit: _Optional[int] = ..., if_generation_match: _Optional[int] = ...) -> None: ...

class RetrieveStreamResponse(_message.Message):
    __slots__ = ("object", "chunk")
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    object: ObjectInfo
    chunk: bytes
    def __init__(self, object: _Optional[_Union[ObjectInfo, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class StatRequest(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: str
    def __init__(self, key: _Optional[str] = ...) -> None: ...

class StatResponse(_message.Message):
    __slots__ = ("object",)
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    object: ObjectInfo
    def __init__(self, object: _Optional[_Union[ObjectInfo, _Mapping]] = ...) -> None: ...

class ExistsRequest(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: str
    def __init__(self, key: _Optional[str] = ...) -> None: ...

class ExistsResponse(_message.Message):
    __slots__ = ("exists",)
    EXISTS_FIELD_NUMBER: _ClassVar[int]
    exists: bool
    def __init__(self, exists: _Optional[bool] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("key", "if_generation_match")
    KEY_FIELD_NUMBER: _ClassVar[int]
    IF_GENERATION_MATCH_FIELD_NUMBER: _ClassVar[int]
    key: str
    if_generation_match: int
    def __init__(self, key: _Optional[str] = ..., if_generation_match: _Optional[int] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    def __init__(self, deleted: _Optional[bool] = ...) -> None: ...

class DeleteManyRequest(_message.Message):
    __slots__ = ("keys", "prefix")
    KEYS_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedScalarFieldContainer[str]
    prefix: str
    def __init__(self, keys: _Optional[_Iterable[str]] = ..., prefix: _Optional[str] = ...) -> None: ...

class DeleteManyResponse(_message.Message):
    __slots__ = ("deleted_count",)
    DELETED_COUNT_FIELD_NUMBER: _ClassVar[int]
    deleted_count: int
    def __init__(self, deleted_count: _Optional[int] = ...) -> None: ...

class ListKeysRequest(_message.Message):
    __slots__ = ("prefix", "limit", "page_token", "delimiter", "include_info", "allow_partial")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    DELIMITER_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_INFO_FIELD_NUMBER: _ClassVar[int]
    ALLOW_PARTIAL_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    limit: int
    page_token: str
    delimiter: str
    include_info: bool
    allow_partial: bool
    def __init__(self, prefix: _Optional[str] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ..., delimiter: _Optional[str] = ..., include_info: _Optional[bool] = ..., allow_partial: _Optional[bool] = ...) -> None: ...

class ListKeysResponse(_message.Message):
    __slots__ = ("keys", "prefixes", "next_page_token", "objects", "partial")
    KEYS_FIELD_NUMBER: _ClassVar[int]
    PREFIXES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedScalarFieldContainer[str]
    prefixes: _containers.RepeatedScalarFieldContainer[str]
    next_page_token: str
    objects: _containers.RepeatedCompositeFieldContainer[ObjectInfo]
    partial: bool
    def __init__(self, keys: _Optional[_Iterable[str]] = ..., prefixes: _Optional[_Iterable[str]] = ..., next_page_token: _Optional[str] = ..., objects: _Optional[_Iterable[_Union[ObjectInfo, _Mapping]]] = ..., partial: _Optional[bool] = ...) -> None: ...

class GetStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class OperationCount(_message.Message):
    __slots__ = ("method", "total", "successful", "failed")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    SUCCESSFUL_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    method: str
    total: int
    successful: int
    failed: int
    def __init__(self, method: _Optional[str] = ..., total: _Optional[int] = ..., successful: _Optional[int] = ..., failed: _Optional[int] = ...) -> None: ...

class GetStatsResponse(_message.Message):
    __slots__ = ("initialized", "gcs_available", "local_fallback_enabled", "cache_enabled", "compression_enabled", "encryption_enabled", "cache_entries", "cache_bytes", "total_operations", "successful_operations", "failed_operations", "cache_hits", "cache_misses", "compression_savings_bytes", "pending_replication", "oldest_pending_age_seconds", "uptime_seconds", "version", "operations", "disk_cache_entries", "disk_cache_bytes", "disk_cache_hits", "disk_cache_misses")
    INITIALIZED_FIELD_NUMBER: _ClassVar[int]
    GCS_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    LOCAL_FALLBACK_ENABLED_FIELD_NUMBER: _ClassVar[int]
    CACHE_ENABLED_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_ENABLED_FIELD_NUMBER: _ClassVar[int]
    ENCRYPTION_ENABLED_FIELD_NUMBER: _ClassVar[int]
    CACHE_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    CACHE_BYTES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    SUCCESSFUL_OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    FAILED_OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    CACHE_HITS_FIELD_NUMBER: _ClassVar[int]
    CACHE_MISSES_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_SAVINGS_BYTES_FIELD_NUMBER: _ClassVar[int]
    PENDING_REPLICATION_FIELD_NUMBER: _ClassVar[int]
    OLDEST_PENDING_AGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    UPTIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    DISK_CACHE_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    DISK_CACHE_BYTES_FIELD_NUMBER: _ClassVar[int]
    DISK_CACHE_HITS_FIELD_NUMBER: _ClassVar[int]
    DISK_CACHE_MISSES_FIELD_NUMBER: _ClassVar[int]
    initialized: bool
    gcs_available: bool
    local_fallback_enabled: bool
    cache_enabled: bool
    compression_enabled: bool
    encryption_enabled: bool
    cache_entries: int
    cache_bytes: int
    total_operations: int
    successful_operations: int
    failed_operations: int
    cache_hits: int
    cache_misses: int
    compression_savings_bytes: int
    pending_replication: int
    oldest_pending_age_seconds: float
    uptime_seconds: float
    version: str
    operations: _containers.RepeatedCompositeFieldContainer[OperationCount]
    disk_cache_entries: int
    disk_cache_bytes: int
    disk_cache_hits: int
    disk_cache_misses: int
    def __init__(self, initialized: _Optional[bool] = ..., gcs_available: _Optional[bool] = ..., local_fallback_enabled: _Optional[bool] = ..., cache_enabled: _Optional[bool] = ..., compression_enabled: _Optional[bool] = ..., encryption_enabled: _Optional[bool] = ..., cache_entries: _Optional[int] = ..., cache_bytes: _Optional[int] = ..., total_operations: _Optional[int] = ..., successful_operations: _Optional[int] = ..., failed_operations: _Optional[int] = ..., cache_hits: _Optional[int] = ..., cache_misses: _Optional[int] = ..., compression_savings_bytes: _Optional[int] = ..., pending_replication: _Optional[int] = ..., oldest_pending_age_seconds: _Optional[float] = ..., uptime_seconds: _Optional[float] = ..., version: _Optional[str] = ..., operations: _Optional[_Iterable[_Union[OperationCount, _Mapping]]] = ..., disk_cache_entries: _Optional[int] = ..., disk_cache_bytes: _Optional[int] = ..., disk_cache_hits: _Optional[int] = ..., disk_cache_misses: _Optional[int] = ...) -> None: ...

class VerifyRequest(_message.Message):
    __slots__ = ("prefix", "include_gcs", "repair")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_GCS_FIELD_NUMBER: _ClassVar[int]
    REPAIR_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    include_gcs: bool
    repair: bool
    def __init__(self, prefix: _Optional[str] = ..., include_gcs: _Optional[bool] = ..., repair: _Optional[bool] = ...) -> None: ...

class VerifyResponse(_message.Message):
    __slots__ = ("progress", "finding", "summary")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    FINDING_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    progress: VerifyProgress
    finding: VerifyFinding
    summary: VerifySummary
    def __init__(self, progress: _Optional[_Union[VerifyProgress, _Mapping]] = ..., finding: _Optional[_Union[VerifyFinding, _Mapping]] = ..., summary: _Optional[_Union[VerifySummary, _Mapping]] = ...) -> None: ...

class VerifyProgress(_message.Message):
    __slots__ = ("tier", "checked_copies", "checked_bytes", "total_copies", "total_bytes")
    TIER_FIELD_NUMBER: _ClassVar[int]
    CHECKED_COPIES_FIELD_NUMBER: _ClassVar[int]
    CHECKED_BYTES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_COPIES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    tier: VerifyTier
    checked_copies: int
    checked_bytes: int
    total_copies: int
    total_bytes: int
    def __init__(self, tier: _Optional[_Union[VerifyTier, str]] = ..., checked_copies: _Optional[int] = ..., checked_bytes: _Optional[int] = ..., total_copies: _Optional[int] = ..., total_bytes: _Optional[int] = ...) -> None: ...

class VerifyFinding(_message.Message):
    __slots__ = ("tier", "key", "generation", "problem", "detail", "repaired", "repair")
    TIER_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    REPAIRED_FIELD_NUMBER: _ClassVar[int]
    REPAIR_FIELD_NUMBER: _ClassVar[int]
    tier: VerifyTier
    key: str
    generation: int
    problem: VerifyProblem
    detail: str
    repaired: bool
    repair: str
    def __init__(self, tier: _Optional[_Union[VerifyTier, str]] = ..., key: _Optional[str] = ..., generation: _Optional[int] = ..., problem: _Optional[_Union[VerifyProblem, str]] = ..., detail: _Optional[str] = ..., repaired: _Optional[bool] = ..., repair: _Optional[str] = ...) -> None: ...

class VerifySummary(_message.Message):
    __slots__ = ("checked_copies", "checked_bytes", "corrupt", "orphans", "unchecked", "repaired", "seconds")
    CHECKED_COPIES_FIELD_NUMBER: _ClassVar[int]
    CHECKED_BYTES_FIELD_NUMBER: _ClassVar[int]
    CORRUPT_FIELD_NUMBER: _ClassVar[int]
    ORPHANS_FIELD_NUMBER: _ClassVar[int]
    UNCHECKED_FIELD_NUMBER: _ClassVar[int]
    REPAIRED_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    checked_copies: int
    checked_bytes: int
    corrupt: int
    orphans: int
    unchecked: int
    repaired: int
    seconds: float
    def __init__(self, checked_copies: _Optional[int] = ..., checked_bytes: _Optional[int] = ..., corrupt: _Optional[int] = ..., orphans: _Optional[int] = ..., unchecked: _Optional[int] = ..., repaired: _Optional[int] = ..., seconds: _Optional[float] = ...) -> None: ...

class GetUsageRequest(_message.Message):
    __slots__ = ("prefix", "page_token", "max_objects")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    MAX_OBJECTS_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    page_token: str
    max_objects: int
    def __init__(self, prefix: _Optional[str] = ..., page_token: _Optional[str] = ..., max_objects: _Optional[int] = ...) -> None: ...

class GetUsageResponse(_message.Message):
    __slots__ = ("object_count", "total_bytes", "stored_bytes", "next_page_token", "from_index")
    OBJECT_COUNT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    STORED_BYTES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FROM_INDEX_FIELD_NUMBER: _ClassVar[int]
    object_count: int
    total_bytes: int
    stored_bytes: int
    next_page_token: str
    from_index: bool
    def __init__(self, object_count: _Optional[int] = ..., total_bytes: _Optional[int] = ..., stored_bytes: _Optional[int] = ..., next_page_token: _Optional[str] = ..., from_index: _Optional[bool] = ...) -> None: ...

class FlushRequest(_message.Message):
    __slots__ = ("timeout_seconds",)
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    timeout_seconds: float
    def __init__(self, timeout_seconds: _Optional[float] = ...) -> None: ...

class FlushResponse(_message.Message):
    __slots__ = ("pending", "replicated", "failed", "oldest_pending_age_seconds", "done")
    PENDING_FIELD_NUMBER: _ClassVar[int]
    REPLICATED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    OLDEST_PENDING_AGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    pending: int
    replicated: int
    failed: int
    oldest_pending_age_seconds: float
    done: bool
    def __init__(self, pending: _Optional[int] = ..., replicated: _Optional[int] = ..., failed: _Optional[int] = ..., oldest_pending_age_seconds: _Optional[float] = ..., done: _Optional[bool] = ...) -> None: ...

class QueryUploadRequest(_message.Message):
    __slots__ = ("upload_id",)
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    upload_id: str
    def __init__(self, upload_id: _Optional[str] = ...) -> None: ...

class QueryUploadResponse(_message.Message):
    __slots__ = ("committed_size", "complete", "object", "expires_at")
    COMMITTED_SIZE_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    committed_size: int
    complete: bool
    object: ObjectInfo
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, committed_size: _Optional[int] = ..., complete: _Optional[bool] = ..., object: _Optional[_Union[ObjectInfo, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
