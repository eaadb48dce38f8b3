"""Pod shaping for the head and each node pool: the fields a KubeRay user sets on a pod template.

The Kubernetes types (Volume sources, affinity terms, env valueFrom) are large and change between
Kubernetes releases, so their subtrees are kept as given (`x-kubernetes-preserve-unknown-fields` in the
CRD) and the API server validates them when KubeRay creates the pods. What can be checked here is:
names (DNS labels, env names), the keys Red, Ray and KubeRay set themselves, mounts of undeclared volumes,
and a volume with no source or two.
"""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from red.spec.base import Model

DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
ENV_NAME_PATTERN = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"  # Kubernetes' C_IDENTIFIER-ish rule for env names
# Red's own /dev/shm volume, and the prefix of every other volume Red adds (checkpoints, ...).
SHM_VOLUME = "dshm"
RESERVED_VOLUME_PREFIX = "red-"
# Set on the Ray pods by KubeRay (ray-operator/controllers/ray/utils/constant.go) or by Red: a user value
# would break the cluster (RAY_ADDRESS, the token) or the engine. Other RAY_* settings are Ray's knobs
# and may be set here.
RESERVED_POD_ENV_NAMES = (
    "RAY_ADDRESS",
    "RAY_AUTH_MODE",
    "RAY_AUTH_TOKEN",
    "RAY_CLOUD_INSTANCE_ID",
    "RAY_CLUSTER_NAME",
    "RAY_CLUSTER_NAMESPACE",
    "RAY_DASHBOARD_ADDRESS",
    "RAY_ENABLE_K8S_TOKEN_AUTH",
    "RAY_IP",
    "RAY_JOB_SUBMISSION_ID",
    "RAY_NODE_TYPE_NAME",
    "RAY_PORT",
)
RESERVED_POD_ENV_PREFIXES = ("RED_", "KUBERAY_")
# Labels Red puts on every pod (red_operator.names.labels) and KubeRay's own: a user value would make the
# operator or KubeRay lose track of its pods.
RESERVED_LABEL_PREFIXES = ("red.dev/", "ray.io/", "app.kubernetes.io/")
RESERVED_ANNOTATION_PREFIXES = ("red.dev/", "ray.io/")
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
# Kubernetes' volume sources (core/v1 Volume, 1.34): exactly one per volume.
VOLUME_SOURCES = (
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "gitRepo",
    "glusterfs",
    "hostPath",
    "image",
    "iscsi",
    "nfs",
    "persistentVolumeClaim",
    "photonPersistentDisk",
    "portworxVolume",
    "projected",
    "quobyte",
    "rbd",
    "scaleIO",
    "secret",
    "storageos",
    "vsphereVolume",
)
# Ray's default object store: 30% of the memory it sees (ray_constants.DEFAULT_OBJECT_STORE_MEMORY_PROPORTION).
OBJECT_STORE_FRACTION = 0.3
# Ray uses /dev/shm only when it has room for the whole object store, and asks for 10% more
# (ray._private.services: "--shm-size=object_store_memory * 1.1").
SHM_HEADROOM = 1.1
MAX_MAP_ENTRIES = 64
MAX_LIST_ITEMS = 64

_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?|\.[0-9]+)(?:[eE]([-+]?[0-9]+))?(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$")
_MULTIPLIERS = {
    None: 1,
    "m": 1e-3,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def memory_bytes(quantity: str) -> int:
    """Bytes in a Kubernetes memory quantity (`16Gi`, `512M`, `1e9`). Raises ValueError with the fix."""
    m = _QUANTITY.match(quantity.strip())
    if not m:
        raise ValueError(f"{quantity!r} is not a Kubernetes quantity; write e.g. '16Gi' or '512Mi'")
    number, exponent, suffix = m.groups()
    return int(float(number) * 10 ** int(exponent or 0) * _MULTIPLIERS[suffix])


def mebibytes(n: int) -> str:
    """`n` bytes as a quantity in whole Mi, rounded up (what a sizeLimit reads best as)."""
    return f"{-(-n // 2**20)}Mi"


def _key_problem(key: str, what: str) -> str | None:
    """Kubernetes' rule for label and annotation keys: an optional DNS-subdomain prefix, a name of 63."""
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return f"{key!r}: the {what} key's prefix must be a lowercase DNS subdomain (e.g. example.com/team)"
    if not name or len(name) > 63 or not _LABEL_NAME.match(name):
        return (
            f"{key!r}: a {what} key's name is at most 63 letters, digits, '-', '_' or '.', starting and ending "
            "with a letter or digit"
        )
    return None


class EnvVar(Model):
    """An environment variable of the Ray container (Kubernetes EnvVar)."""

    name: str = Field(min_length=1, max_length=253, pattern=ENV_NAME_PATTERN)
    value: str | None = None
    # Kubernetes' EnvVarSource (secretKeyRef, configMapKeyRef, fieldRef, resourceFieldRef), kept as given:
    # the API server validates it when the pod is created.
    value_from: dict[str, Any] | None = Field(
        default=None, description="Kubernetes EnvVarSource: secretKeyRef, configMapKeyRef, fieldRef, ..."
    )


class NameRef(Model):
    name: str = Field(min_length=1, max_length=253)
    optional: bool | None = None


class EnvFromSource(Model):
    """Every key of a ConfigMap or Secret as environment variables (Kubernetes EnvFromSource)."""

    prefix: str | None = None
    config_map_ref: NameRef | None = None
    secret_ref: NameRef | None = None

    @model_validator(mode="after")
    def _one_source(self) -> EnvFromSource:
        if (self.config_map_ref is None) == (self.secret_ref is None):
            raise ValueError("give exactly one of configMapRef or secretRef, e.g. secretRef: {name: s3-credentials}")
        return self


class Volume(Model):
    """A pod volume (Kubernetes Volume): `name` plus exactly one source, e.g.
    `{name: data, persistentVolumeClaim: {claimName: shared}}`."""

    # The sources are Kubernetes' own types, kept as given (checked by the API server); only their keys
    # are checked here.
    model_config = ConfigDict(**{**Model.model_config, "extra": "allow"})

    name: str = Field(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN, description="A DNS label.")

    @field_validator("name", mode="before")
    @classmethod
    def _dns(cls, v: Any) -> Any:
        if isinstance(v, str) and v and not re.match(DNS_LABEL_PATTERN, v):
            raise ValueError(f"{v!r}: a volume name is a DNS label: lowercase letters, digits and '-' (e.g. 'data')")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> Volume:
        keys = list(self.model_extra or {})
        unknown = [k for k in keys if k not in VOLUME_SOURCES]
        if unknown:
            hints = [difflib.get_close_matches(k, VOLUME_SOURCES, n=1, cutoff=0.7) for k in unknown]
            named = ", ".join(
                f"{k!r}" + (f" (did you mean {h[0]!r}?)" if h else "") for k, h in zip(unknown, hints, strict=True)
            )
            raise ValueError(
                f"volume {self.name!r}: unknown volume source {named}; use one of {', '.join(VOLUME_SOURCES)}"
            )
        if len(keys) != 1:
            raise ValueError(
                f"volume {self.name!r} needs exactly one source (e.g. persistentVolumeClaim, secret, emptyDir); "
                f"it has {len(keys)}"
            )
        return self


class VolumeMount(Model):
    """Where a volume appears in the Ray container (Kubernetes VolumeMount)."""

    name: str = Field(min_length=1, max_length=63, description="A volume of this pod, or `dshm`.")
    mount_path: str = Field(min_length=1, max_length=4096)
    read_only: bool | None = None
    sub_path: str | None = None
    sub_path_expr: str | None = None
    mount_propagation: Literal["None", "HostToContainer", "Bidirectional"] | None = None
    recursive_read_only: Literal["Disabled", "IfPossible", "Enabled"] | None = None


class Affinity(Model):
    """Kubernetes Affinity. The terms are kept as given (the API server checks them)."""

    node_affinity: dict[str, Any] | None = None
    pod_affinity: dict[str, Any] | None = None
    pod_anti_affinity: dict[str, Any] | None = None


class Toleration(Model):
    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


class PodShape(Model):
    """What a KubeRay user sets on a pod template, for the head or a node pool's workers."""

    labels: dict[str, Annotated[str, Field(max_length=63)]] = Field(
        default_factory=dict,
        max_length=MAX_MAP_ENTRIES,
        description=f"Pod labels. {KUEUE_QUEUE_LABEL} is also put on the RayCluster (Kueue admits it whole).",
    )
    annotations: dict[str, str] = Field(
        default_factory=dict, max_length=MAX_MAP_ENTRIES, description="Pod annotations."
    )
    env: list[EnvVar] = Field(
        default_factory=list, max_length=MAX_LIST_ITEMS, description="Environment of the Ray container."
    )
    env_from: list[EnvFromSource] = Field(
        default_factory=list,
        max_length=MAX_LIST_ITEMS,
        description="ConfigMaps and Secrets whose keys become environment variables (e.g. cloud credentials).",
    )
    volumes: list[Volume] = Field(default_factory=list, max_length=MAX_LIST_ITEMS, description="Pod volumes.")
    volume_mounts: list[VolumeMount] = Field(
        default_factory=list, max_length=MAX_LIST_ITEMS, description="Mounts of those volumes in the Ray container."
    )
    image_pull_secrets: list[NameRef] = Field(
        default_factory=list, max_length=MAX_LIST_ITEMS, description="Secrets for pulling the image."
    )
    priority_class_name: str | None = Field(default=None, max_length=253, description="The pods' PriorityClass.")
    node_selector: dict[str, str] = Field(
        default_factory=dict, max_length=MAX_MAP_ENTRIES, description="Node labels the pods must match."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list,
        max_length=MAX_LIST_ITEMS,
        description="Taints the pods tolerate (e.g. a GPU pool's nvidia.com/gpu taint, to put the head there).",
    )
    affinity: Affinity | None = Field(default=None, description="Kubernetes affinity of the pods.")
    object_store_memory: str | None = Field(
        default=None,
        description="Ray's object store per pod (quantity). Default: 30% of the pod's memory, as Ray does. "
        "/dev/shm (a memory emptyDir) is sized to hold it.",
    )
    # Kubernetes' SecurityContext types, kept as given: they replace Red's defaults whole.
    security_context: dict[str, Any] | None = Field(
        default=None,
        description="The Ray container's securityContext; replaces Red's default (restricted Pod Security: "
        "no privilege escalation, all capabilities dropped, RuntimeDefault seccomp, non-root).",
    )
    pod_security_context: dict[str, Any] | None = Field(
        default=None,
        description="The pod's securityContext; replaces Red's default (runAsNonRoot, runAsUser 1000 as in "
        "Ray's images, RuntimeDefault seccomp).",
    )

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        problems = [p for k in v if (p := _key_problem(k, "label"))]
        problems += [
            f"{k!r}: label values are at most 63 letters, digits, '-', '_' or '.', starting and ending with a "
            "letter or digit"
            for k, val in v.items()
            if val and not _LABEL_NAME.match(val)
        ]
        reserved = [k for k in v if k.startswith(RESERVED_LABEL_PREFIXES)]
        if reserved:
            problems.append(
                f"{', '.join(reserved)}: labels under {', '.join(RESERVED_LABEL_PREFIXES)} are set by Red and "
                "KubeRay to find their pods; choose another key"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return v

    @field_validator("annotations")
    @classmethod
    def _annotations(cls, v: dict[str, str]) -> dict[str, str]:
        problems = [p for k in v if (p := _key_problem(k, "annotation"))]
        reserved = [k for k in v if k.startswith(RESERVED_ANNOTATION_PREFIXES)]
        if reserved:
            problems.append(
                f"{', '.join(reserved)}: annotations under {', '.join(RESERVED_ANNOTATION_PREFIXES)} belong to "
                "Red and KubeRay; choose another key"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return v

    @field_validator("env")
    @classmethod
    def _env(cls, v: list[EnvVar]) -> list[EnvVar]:
        reserved = [
            e.name for e in v if e.name in RESERVED_POD_ENV_NAMES or e.name.startswith(RESERVED_POD_ENV_PREFIXES)
        ]
        if reserved:
            raise ValueError(
                f"{', '.join(reserved)}: set by KubeRay or Red on the Ray pods (the cluster's address and token, "
                "Red's settings); remove them. Other RAY_* settings of Ray may be set here"
            )
        return v

    @field_validator("volumes")
    @classmethod
    def _volumes(cls, v: list[Volume]) -> list[Volume]:
        names = [vol.name for vol in v]
        reserved = [n for n in names if n == SHM_VOLUME or n.startswith(RESERVED_VOLUME_PREFIX)]
        if reserved:
            raise ValueError(
                f"{', '.join(reserved)}: '{SHM_VOLUME}' and names starting with '{RESERVED_VOLUME_PREFIX}' are "
                "Red's own volumes; rename yours"
            )
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"{', '.join(dupes)}: each volume name may appear once")
        return v

    @field_validator("object_store_memory")
    @classmethod
    def _quantity(cls, v: str | None) -> str | None:
        if v is not None and memory_bytes(v) <= 0:
            raise ValueError("must be above 0, e.g. '2Gi'")
        return v

    @model_validator(mode="after")
    def _mounts_name_volumes(self) -> PodShape:
        declared = {v.name for v in self.volumes} | {SHM_VOLUME}
        missing = [m.name for m in self.volume_mounts if m.name not in declared]
        if missing:
            raise ValueError(
                f"volumeMounts name {', '.join(map(repr, missing))}, which is not among this pod's volumes: add it "
                "to volumes (in the same head or node pool) or fix the name"
            )
        return self

    def shm_bytes(self, memory: str) -> tuple[int, int]:
        """(object store bytes, /dev/shm sizeLimit bytes) for a pod with this much memory."""
        store = memory_bytes(self.object_store_memory) if self.object_store_memory else int(
            memory_bytes(memory) * OBJECT_STORE_FRACTION
        )
        return store, int(store * SHM_HEADROOM)


class ServiceAccountSpec(Model):
    """The engine's ServiceAccount (the Ray pods run as it)."""

    annotations: dict[str, str] = Field(
        default_factory=dict,
        max_length=MAX_MAP_ENTRIES,
        description="Annotations for cloud IAM, e.g. eks.amazonaws.com/role-arn (IRSA) or "
        "iam.gke.io/gcp-service-account (Workload Identity).",
    )

    @field_validator("annotations")
    @classmethod
    def _keys(cls, v: dict[str, str]) -> dict[str, str]:
        problems = [p for k in v if (p := _key_problem(k, "annotation"))]
        if problems:
            raise ValueError("; ".join(problems))
        return v
