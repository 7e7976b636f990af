from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RankRequest(_message.Message):
    __slots__ = ("run_id", "task", "sample_ids", "image_ids", "seed")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_IDS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    task: str
    sample_ids: _containers.RepeatedScalarFieldContainer[str]
    image_ids: _containers.RepeatedScalarFieldContainer[str]
    seed: int
    def __init__(self, run_id: _Optional[str] = ..., task: _Optional[str] = ..., sample_ids: _Optional[_Iterable[str]] = ..., image_ids: _Optional[_Iterable[str]] = ..., seed: _Optional[int] = ...) -> None: ...

class RankReply(_message.Message):
    __slots__ = ("missing", "metrics_json", "per_sample_json", "texts")
    MISSING_FIELD_NUMBER: _ClassVar[int]
    METRICS_JSON_FIELD_NUMBER: _ClassVar[int]
    PER_SAMPLE_JSON_FIELD_NUMBER: _ClassVar[int]
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    missing: _containers.RepeatedScalarFieldContainer[str]
    metrics_json: str
    per_sample_json: str
    texts: int
    def __init__(self, missing: _Optional[_Iterable[str]] = ..., metrics_json: _Optional[str] = ..., per_sample_json: _Optional[str] = ..., texts: _Optional[int] = ...) -> None: ...

class SetupRequest(_message.Message):
    __slots__ = ("setup",)
    SETUP_FIELD_NUMBER: _ClassVar[int]
    setup: bytes
    def __init__(self, setup: _Optional[bytes] = ...) -> None: ...

class SetupReply(_message.Message):
    __slots__ = ("setup_id",)
    SETUP_ID_FIELD_NUMBER: _ClassVar[int]
    setup_id: str
    def __init__(self, setup_id: _Optional[str] = ...) -> None: ...

class SubmitRequest(_message.Message):
    __slots__ = ("header", "chunk", "end")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    header: SubmitHeader
    chunk: Chunk
    end: SubmitEnd
    def __init__(self, header: _Optional[_Union[SubmitHeader, _Mapping]] = ..., chunk: _Optional[_Union[Chunk, _Mapping]] = ..., end: _Optional[_Union[SubmitEnd, _Mapping]] = ...) -> None: ...

class SubmitBundle(_message.Message):
    __slots__ = ("parts",)
    PARTS_FIELD_NUMBER: _ClassVar[int]
    parts: _containers.RepeatedCompositeFieldContainer[SubmitRequest]
    def __init__(self, parts: _Optional[_Iterable[_Union[SubmitRequest, _Mapping]]] = ...) -> None: ...

class SubmitHeader(_message.Message):
    __slots__ = ("protocol", "idempotency_key", "run_id", "sample_id", "image_id", "tasks", "question", "height", "width", "model_id", "codebook_id", "settings", "seed", "descriptions", "link", "setup_id")
    class SettingsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    CODEBOOK_ID_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTIONS_FIELD_NUMBER: _ClassVar[int]
    LINK_FIELD_NUMBER: _ClassVar[int]
    SETUP_ID_FIELD_NUMBER: _ClassVar[int]
    protocol: int
    idempotency_key: str
    run_id: str
    sample_id: str
    image_id: str
    tasks: _containers.RepeatedScalarFieldContainer[str]
    question: str
    height: int
    width: int
    model_id: str
    codebook_id: str
    settings: _containers.ScalarMap[str, str]
    seed: int
    descriptions: _containers.RepeatedCompositeFieldContainer[DescriptionHeader]
    link: LinkState
    setup_id: str
    def __init__(self, protocol: _Optional[int] = ..., idempotency_key: _Optional[str] = ..., run_id: _Optional[str] = ..., sample_id: _Optional[str] = ..., image_id: _Optional[str] = ..., tasks: _Optional[_Iterable[str]] = ..., question: _Optional[str] = ..., height: _Optional[int] = ..., width: _Optional[int] = ..., model_id: _Optional[str] = ..., codebook_id: _Optional[str] = ..., settings: _Optional[_Mapping[str, str]] = ..., seed: _Optional[int] = ..., descriptions: _Optional[_Iterable[_Union[DescriptionHeader, _Mapping]]] = ..., link: _Optional[_Union[LinkState, _Mapping]] = ..., setup_id: _Optional[str] = ...) -> None: ...

class DescriptionHeader(_message.Message):
    __slots__ = ("index", "count", "erased", "erasure_reason", "size", "image_id", "ledger", "link")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    ERASED_FIELD_NUMBER: _ClassVar[int]
    ERASURE_REASON_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    LEDGER_FIELD_NUMBER: _ClassVar[int]
    LINK_FIELD_NUMBER: _ClassVar[int]
    index: int
    count: int
    erased: bool
    erasure_reason: str
    size: int
    image_id: str
    ledger: _containers.RepeatedCompositeFieldContainer[LedgerEntry]
    link: LinkStats
    def __init__(self, index: _Optional[int] = ..., count: _Optional[int] = ..., erased: _Optional[bool] = ..., erasure_reason: _Optional[str] = ..., size: _Optional[int] = ..., image_id: _Optional[str] = ..., ledger: _Optional[_Iterable[_Union[LedgerEntry, _Mapping]]] = ..., link: _Optional[_Union[LinkStats, _Mapping]] = ...) -> None: ...

class LedgerEntry(_message.Message):
    __slots__ = ("stage", "category", "bits")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    BITS_FIELD_NUMBER: _ClassVar[int]
    stage: str
    category: str
    bits: int
    def __init__(self, stage: _Optional[str] = ..., category: _Optional[str] = ..., bits: _Optional[int] = ...) -> None: ...

class LinkStats(_message.Message):
    __slots__ = ("info_bits", "coded_bits", "channel_uses", "airtime_s", "blocks", "block_errors", "rounds", "delivered")
    INFO_BITS_FIELD_NUMBER: _ClassVar[int]
    CODED_BITS_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_USES_FIELD_NUMBER: _ClassVar[int]
    AIRTIME_S_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_FIELD_NUMBER: _ClassVar[int]
    BLOCK_ERRORS_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_FIELD_NUMBER: _ClassVar[int]
    info_bits: int
    coded_bits: int
    channel_uses: int
    airtime_s: float
    blocks: int
    block_errors: int
    rounds: int
    delivered: bool
    def __init__(self, info_bits: _Optional[int] = ..., coded_bits: _Optional[int] = ..., channel_uses: _Optional[int] = ..., airtime_s: _Optional[float] = ..., blocks: _Optional[int] = ..., block_errors: _Optional[int] = ..., rounds: _Optional[int] = ..., delivered: _Optional[bool] = ...) -> None: ...

class LinkState(_message.Message):
    __slots__ = ("link", "snr_db", "snr_type")
    LINK_FIELD_NUMBER: _ClassVar[int]
    SNR_DB_FIELD_NUMBER: _ClassVar[int]
    SNR_TYPE_FIELD_NUMBER: _ClassVar[int]
    link: str
    snr_db: float
    snr_type: str
    def __init__(self, link: _Optional[str] = ..., snr_db: _Optional[float] = ..., snr_type: _Optional[str] = ...) -> None: ...

class Chunk(_message.Message):
    __slots__ = ("index", "offset", "data")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    index: int
    offset: int
    data: bytes
    def __init__(self, index: _Optional[int] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class SubmitEnd(_message.Message):
    __slots__ = ("total_bytes", "sha256")
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    total_bytes: int
    sha256: bytes
    def __init__(self, total_bytes: _Optional[int] = ..., sha256: _Optional[bytes] = ...) -> None: ...

class SubmitReply(_message.Message):
    __slots__ = ("idempotency_key", "sample_id", "outputs", "outputs_json", "info_json", "tokens_to_model", "descriptions_received", "cloud_s", "replayed", "model_id", "server_s")
    class OutputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class OutputsJsonEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_JSON_FIELD_NUMBER: _ClassVar[int]
    INFO_JSON_FIELD_NUMBER: _ClassVar[int]
    TOKENS_TO_MODEL_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTIONS_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    CLOUD_S_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    SERVER_S_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    sample_id: str
    outputs: _containers.ScalarMap[str, str]
    outputs_json: _containers.ScalarMap[str, str]
    info_json: str
    tokens_to_model: int
    descriptions_received: int
    cloud_s: float
    replayed: bool
    model_id: str
    server_s: float
    def __init__(self, idempotency_key: _Optional[str] = ..., sample_id: _Optional[str] = ..., outputs: _Optional[_Mapping[str, str]] = ..., outputs_json: _Optional[_Mapping[str, str]] = ..., info_json: _Optional[str] = ..., tokens_to_model: _Optional[int] = ..., descriptions_received: _Optional[int] = ..., cloud_s: _Optional[float] = ..., replayed: _Optional[bool] = ..., model_id: _Optional[str] = ..., server_s: _Optional[float] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatusReply(_message.Message):
    __slots__ = ("version", "protocol", "state", "model_id", "codebook_id", "method", "tasks", "settings", "limits", "counters", "uptime_s", "error", "gallery_images", "gallery_texts", "gallery_source")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[StatusReply.State]
        STARTING: _ClassVar[StatusReply.State]
        SERVING: _ClassVar[StatusReply.State]
        DRAINING: _ClassVar[StatusReply.State]
        FAILED: _ClassVar[StatusReply.State]
    STATE_UNSPECIFIED: StatusReply.State
    STARTING: StatusReply.State
    SERVING: StatusReply.State
    DRAINING: StatusReply.State
    FAILED: StatusReply.State
    class SettingsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    CODEBOOK_ID_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    UPTIME_S_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    GALLERY_IMAGES_FIELD_NUMBER: _ClassVar[int]
    GALLERY_TEXTS_FIELD_NUMBER: _ClassVar[int]
    GALLERY_SOURCE_FIELD_NUMBER: _ClassVar[int]
    version: str
    protocol: int
    state: StatusReply.State
    model_id: str
    codebook_id: str
    method: str
    tasks: _containers.RepeatedScalarFieldContainer[str]
    settings: _containers.ScalarMap[str, str]
    limits: Limits
    counters: Counters
    uptime_s: float
    error: str
    gallery_images: int
    gallery_texts: int
    gallery_source: str
    def __init__(self, version: _Optional[str] = ..., protocol: _Optional[int] = ..., state: _Optional[_Union[StatusReply.State, str]] = ..., model_id: _Optional[str] = ..., codebook_id: _Optional[str] = ..., method: _Optional[str] = ..., tasks: _Optional[_Iterable[str]] = ..., settings: _Optional[_Mapping[str, str]] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., counters: _Optional[_Union[Counters, _Mapping]] = ..., uptime_s: _Optional[float] = ..., error: _Optional[str] = ..., gallery_images: _Optional[int] = ..., gallery_texts: _Optional[int] = ..., gallery_source: _Optional[str] = ...) -> None: ...

class Limits(_message.Message):
    __slots__ = ("workers", "max_queue", "max_request_bytes", "max_chunk_bytes", "max_message_bytes", "request_timeout_s", "cache_size", "max_pixels", "max_query_bytes")
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUE_FIELD_NUMBER: _ClassVar[int]
    MAX_REQUEST_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    CACHE_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_PIXELS_FIELD_NUMBER: _ClassVar[int]
    MAX_QUERY_BYTES_FIELD_NUMBER: _ClassVar[int]
    workers: int
    max_queue: int
    max_request_bytes: int
    max_chunk_bytes: int
    max_message_bytes: int
    request_timeout_s: float
    cache_size: int
    max_pixels: int
    max_query_bytes: int
    def __init__(self, workers: _Optional[int] = ..., max_queue: _Optional[int] = ..., max_request_bytes: _Optional[int] = ..., max_chunk_bytes: _Optional[int] = ..., max_message_bytes: _Optional[int] = ..., request_timeout_s: _Optional[float] = ..., cache_size: _Optional[int] = ..., max_pixels: _Optional[int] = ..., max_query_bytes: _Optional[int] = ...) -> None: ...

class Counters(_message.Message):
    __slots__ = ("requests", "ok", "computed", "replayed", "invalid_argument", "failed_precondition", "resource_exhausted", "deadline_exceeded", "unavailable", "internal", "cancelled", "unauthenticated", "in_flight", "running", "bytes_received", "descriptions", "erasures")
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    COMPUTED_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    INVALID_ARGUMENT_FIELD_NUMBER: _ClassVar[int]
    FAILED_PRECONDITION_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_EXHAUSTED_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_EXCEEDED_FIELD_NUMBER: _ClassVar[int]
    UNAVAILABLE_FIELD_NUMBER: _ClassVar[int]
    INTERNAL_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    UNAUTHENTICATED_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    BYTES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTIONS_FIELD_NUMBER: _ClassVar[int]
    ERASURES_FIELD_NUMBER: _ClassVar[int]
    requests: int
    ok: int
    computed: int
    replayed: int
    invalid_argument: int
    failed_precondition: int
    resource_exhausted: int
    deadline_exceeded: int
    unavailable: int
    internal: int
    cancelled: int
    unauthenticated: int
    in_flight: int
    running: int
    bytes_received: int
    descriptions: int
    erasures: int
    def __init__(self, requests: _Optional[int] = ..., ok: _Optional[int] = ..., computed: _Optional[int] = ..., replayed: _Optional[int] = ..., invalid_argument: _Optional[int] = ..., failed_precondition: _Optional[int] = ..., resource_exhausted: _Optional[int] = ..., deadline_exceeded: _Optional[int] = ..., unavailable: _Optional[int] = ..., internal: _Optional[int] = ..., cancelled: _Optional[int] = ..., unauthenticated: _Optional[int] = ..., in_flight: _Optional[int] = ..., running: _Optional[int] = ..., bytes_received: _Optional[int] = ..., descriptions: _Optional[int] = ..., erasures: _Optional[int] = ...) -> None: ...
