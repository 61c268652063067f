//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`), decoded into
//! JSON for the kinds kubectl's typed `create` subcommands send (kubectl 1.32 posts `create
//! namespace|configmap|secret|serviceaccount|role|rolebinding|clusterrole|clusterrolebinding|
//! deployment|job|cronjob|service|priorityclass|quota|ingress|pdb`, `autoscale` and `drain`'s
//! evictions as protobuf; `apply`,
//! `create -f`, patches and the rest go as JSON). Only the fields those commands set are
//! modelled; unknown field numbers are skipped.
//!
//! Wire format (`k8s.io/apimachinery/pkg/runtime/serializer/protobuf`): the magic
//! `k8s\0`, then a `runtime.Unknown` message (1 typeMeta {1 apiVersion, 2 kind}, 2 raw,
//! 3 contentEncoding, 4 contentType) whose `raw` is the object's message. Field numbers come
//! from the `generated.proto` files of k8s.io/api and k8s.io/apimachinery.
//!
//! TODO(issue 10): the other kinds and fields, and protobuf responses (clients also accept
//! JSON, so responses are JSON); other protobuf bodies are 415.

use base64::Engine;
use serde_json::{json, Map, Value};

/// A body that is not a protobuf object barge can decode.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtoError {
    #[error(
        "provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]"
    )]
    Magic,
    #[error("protobuf decoding error: {0}")]
    Malformed(&'static str),
    /// A kind whose schema barge does not carry.
    #[error("{0}")]
    Unsupported(String),
}

#[derive(Clone, Copy)]
enum Kind {
    Str,
    /// A pointer bool (`*bool`): kept when false.
    Bool,
    /// A plain bool: `false` is omitted, as Go's `omitempty`.
    Flag,
    /// A plain integer: `0` is omitted, as Go's `omitempty`.
    Int,
    /// A pointer integer, or one without `omitempty`: kept when 0.
    OptInt,
    Msg(&'static [Field]),
    /// A message whose fields JSON inlines into the parent (`json:",inline"`).
    Inline(&'static [Field]),
    /// `metav1.Time` {1 seconds, 2 nanos} → RFC 3339.
    Time,
    /// `intstr.IntOrString` {1 type, 2 intVal, 3 strVal} → a number or a string.
    IntOrStr,
    MapStr,
    MapBytes,
    /// `map<string, resource.Quantity>` ({1 string} → its string).
    MapQuantity,
}

#[derive(Clone, Copy)]
struct Field {
    num: u64,
    name: &'static str,
    kind: Kind,
    repeated: bool,
}

const fn f(num: u64, name: &'static str, kind: Kind) -> Field {
    Field {
        num,
        name,
        kind,
        repeated: false,
    }
}

const fn r(num: u64, name: &'static str, kind: Kind) -> Field {
    Field {
        num,
        name,
        kind,
        repeated: true,
    }
}

const OWNER_REFERENCE: &[Field] = &[
    f(1, "kind", Kind::Str),
    f(3, "name", Kind::Str),
    f(4, "uid", Kind::Str),
    f(5, "apiVersion", Kind::Str),
    f(6, "controller", Kind::Bool),
    f(7, "blockOwnerDeletion", Kind::Bool),
];
const OBJECT_META: &[Field] = &[
    f(1, "name", Kind::Str),
    f(2, "generateName", Kind::Str),
    f(3, "namespace", Kind::Str),
    f(5, "uid", Kind::Str),
    f(6, "resourceVersion", Kind::Str),
    f(7, "generation", Kind::Int),
    f(8, "creationTimestamp", Kind::Time),
    f(10, "deletionGracePeriodSeconds", Kind::Int),
    f(11, "labels", Kind::MapStr),
    f(12, "annotations", Kind::MapStr),
    r(13, "ownerReferences", Kind::Msg(OWNER_REFERENCE)),
    r(14, "finalizers", Kind::Str),
];
const OBJECT_REFERENCE: &[Field] = &[
    f(1, "kind", Kind::Str),
    f(2, "namespace", Kind::Str),
    f(3, "name", Kind::Str),
    f(4, "uid", Kind::Str),
    f(5, "apiVersion", Kind::Str),
    f(6, "resourceVersion", Kind::Str),
    f(7, "fieldPath", Kind::Str),
];
const LOCAL_OBJECT_REFERENCE: &[Field] = &[f(1, "name", Kind::Str)];
const NAMESPACE: &[Field] = &[
    f(1, "metadata", Kind::Msg(OBJECT_META)),
    f(2, "spec", Kind::Msg(&[r(1, "finalizers", Kind::Str)])),
];
const CONFIG_MAP: &[Field] = &[
    f(1, "metadata", Kind::Msg(OBJECT_META)),
    f(2, "data", Kind::MapStr),
    f(3, "binaryData", Kind::MapBytes),
    f(4, "immutable", Kind::Bool),
];
const SECRET: &[Field] = &[
    f(1, "metadata", Kind::Msg(OBJECT_META)),
    f(2, "data", Kind::MapBytes),
    f(3, "type", Kind::Str),
    f(4, "stringData", Kind::MapStr),
    f(5, "immutable", Kind::Bool),
];
const SERVICE_ACCOUNT: &[Field] = &[
    f(1, "metadata", Kind::Msg(OBJECT_META)),
    r(2, "secrets", Kind::Msg(OBJECT_REFERENCE)),
    r(3, "imagePullSecrets", Kind::Msg(LOCAL_OBJECT_REFERENCE)),
    f(4, "automountServiceAccountToken", Kind::Bool),
];
const POLICY_RULE: &[Field] = &[
    r(1, "verbs", Kind::Str),
    r(2, "apiGroups", Kind::Str),
    r(3, "resources", Kind::Str),
    r(4, "resourceNames", Kind::Str),
    r(5, "nonResourceURLs", Kind::Str),
];
const ROLE: &[Field] = &[
    f(1, "metadata", Kind::Msg(OBJECT_META)),
    r(2, "rules", Kind::Msg(POLICY_RULE)),
];
const SUBJECT: &[Field] = &[
    f(1, "kind", Kind::Str),
    f(2, "apiGroup", Kind::Str),
    f(3, "name", Kind::Str),
    f(4, "namespace", Kind::Str),
];
const ROLE_REF: &[Field] = &[
    f(1, "apiGroup", Kind::Str),
    f(2, "kind", Kind::Str),
    f(3, "name", Kind::Str),
];
const ROLE_BINDING: &[Field] = &[
    f(1, "metadata", Kind::Msg(OBJECT_META)),
    r(2, "subjects", Kind::Msg(SUBJECT)),
    f(3, "roleRef", Kind::Msg(ROLE_REF)),
];

const LABEL_SELECTOR: &[Field] = &[
    f(1, "matchLabels", Kind::MapStr),
    r(
        2,
        "matchExpressions",
        Kind::Msg(&[
            f(1, "key", Kind::Str),
            f(2, "operator", Kind::Str),
            r(3, "values", Kind::Str),
        ]),
    ),
];
const CONTAINER_PORT: &[Field] = &[
    f(1, "name", Kind::Str),
    f(2, "hostPort", Kind::Int),
    f(3, "containerPort", Kind::Int),
    f(4, "protocol", Kind::Str),
    f(5, "hostIP", Kind::Str),
];
const ENV_VAR: &[Field] = &[f(1, "name", Kind::Str), f(2, "value", Kind::Str)];
const RESOURCES: &[Field] = &[
    f(1, "limits", Kind::MapQuantity),
    f(2, "requests", Kind::MapQuantity),
];
const VOLUME_MOUNT: &[Field] = &[
    f(1, "name", Kind::Str),
    f(2, "readOnly", Kind::Flag),
    f(3, "mountPath", Kind::Str),
    f(4, "subPath", Kind::Str),
];
const SECURITY_CONTEXT: &[Field] = &[
    f(
        1,
        "capabilities",
        Kind::Msg(&[r(1, "add", Kind::Str), r(2, "drop", Kind::Str)]),
    ),
    f(2, "privileged", Kind::Bool),
    f(4, "runAsUser", Kind::OptInt),
    f(5, "runAsNonRoot", Kind::Bool),
    f(6, "readOnlyRootFilesystem", Kind::Bool),
    f(7, "allowPrivilegeEscalation", Kind::Bool),
];
/// `Volume` {1 name, 2 volumeSource (inlined)}; the sources `kubectl debug` and typed
/// clients set (hostPath, emptyDir, secret, configMap, persistentVolumeClaim).
const VOLUME: &[Field] = &[
    f(1, "name", Kind::Str),
    f(
        2,
        "volumeSource",
        Kind::Inline(&[
            f(
                1,
                "hostPath",
                Kind::Msg(&[f(1, "path", Kind::Str), f(2, "type", Kind::Str)]),
            ),
            f(2, "emptyDir", Kind::Msg(&[f(1, "medium", Kind::Str)])),
            f(6, "secret", Kind::Msg(&[f(1, "secretName", Kind::Str)])),
            f(
                10,
                "persistentVolumeClaim",
                Kind::Msg(&[f(1, "claimName", Kind::Str), f(2, "readOnly", Kind::Flag)]),
            ),
            f(19, "configMap", Kind::Msg(LOCAL_OBJECT_REFERENCE_INLINE)),
        ]),
    ),
];
/// `ConfigMapVolumeSource` {1 localObjectReference (inlined: its name)}.
const LOCAL_OBJECT_REFERENCE_INLINE: &[Field] = &[f(
    1,
    "localObjectReference",
    Kind::Inline(LOCAL_OBJECT_REFERENCE),
)];
const TOLERATION: &[Field] = &[
    f(1, "key", Kind::Str),
    f(2, "operator", Kind::Str),
    f(3, "value", Kind::Str),
    f(4, "effect", Kind::Str),
    f(5, "tolerationSeconds", Kind::OptInt),
];
const CONTAINER: &[Field] = &[
    f(1, "name", Kind::Str),
    f(2, "image", Kind::Str),
    r(3, "command", Kind::Str),
    r(4, "args", Kind::Str),
    f(5, "workingDir", Kind::Str),
    r(6, "ports", Kind::Msg(CONTAINER_PORT)),
    r(7, "env", Kind::Msg(ENV_VAR)),
    f(8, "resources", Kind::Msg(RESOURCES)),
    r(9, "volumeMounts", Kind::Msg(VOLUME_MOUNT)),
    f(13, "terminationMessagePath", Kind::Str),
    f(14, "imagePullPolicy", Kind::Str),
    f(15, "securityContext", Kind::Msg(SECURITY_CONTEXT)),
    f(16, "stdin", Kind::Flag),
    f(17, "stdinOnce", Kind::Flag),
    f(18, "tty", Kind::Flag),
    f(20, "terminationMessagePolicy", Kind::Str),
];
const POD_SPEC: &[Field] = &[
    r(1, "volumes", Kind::Msg(VOLUME)),
    r(2, "containers", Kind::Msg(CONTAINER)),
    f(3, "restartPolicy", Kind::Str),
    f(4, "terminationGracePeriodSeconds", Kind::OptInt),
    f(5, "activeDeadlineSeconds", Kind::OptInt),
    f(6, "dnsPolicy", Kind::Str),
    f(7, "nodeSelector", Kind::MapStr),
    f(8, "serviceAccountName", Kind::Str),
    f(10, "nodeName", Kind::Str),
    f(11, "hostNetwork", Kind::Flag),
    f(12, "hostPID", Kind::Flag),
    f(13, "hostIPC", Kind::Flag),
    r(15, "imagePullSecrets", Kind::Msg(LOCAL_OBJECT_REFERENCE)),
    f(16, "hostname", Kind::Str),
    f(17, "subdomain", Kind::Str),
    f(19, "schedulerName", Kind::Str),
    r(20, "initContainers", Kind::Msg(CONTAINER)),
    r(22, "tolerations", Kind::Msg(TOLERATION)),
    f(24, "priorityClassName", Kind::Str),
    f(25, "priority", Kind::OptInt),
];
const POD_TEMPLATE_SPEC: &[Field] = &[
    f(1, "metadata", Kind::Msg(OBJECT_META)),
    f(2, "spec", Kind::Msg(POD_SPEC)),
];
const POD: &[Field] = &[
    f(1, "metadata", Kind::Msg(OBJECT_META)),
    f(2, "spec", Kind::Msg(POD_SPEC)),
];
const DEPLOYMENT: &[Field] = &[
    f(1, "metadata", Kind::Msg(OBJECT_META)),
    f(
        2,
        "spec",
        Kind::Msg(&[
            f(1, "replicas", Kind::OptInt),
            f(2, "selector", Kind::Msg(LABEL_SELECTOR)),
            f(3, "template", Kind::Msg(POD_TEMPLATE_SPEC)),
            f(4, "strategy", Kind::Msg(&[f(1, "type", Kind::Str)])),
            f(5, "minReadySeconds", Kind::Int),
            f(6, "revisionHistoryLimit", Kind::OptInt),
            f(7, "paused", Kind::Flag),
            f(9, "progressDeadlineSeconds", Kind::OptInt),
        ]),
    ),
];
const JOB_SPEC: &[Field] = &[
    f(1, "parallelism", Kind::OptInt),
    f(2, "completions", Kind::OptInt),
    f(3, "activeDeadlineSeconds", Kind::OptInt),
    f(4, "selector", Kind::Msg(LABEL_SELECTOR)),
    f(5, "manualSelector", Kind::Bool),
    f(6, "template", Kind::Msg(POD_TEMPLATE_SPEC)),
    f(7, "backoffLimit", Kind::OptInt),
    f(8, "ttlSecondsAfterFinished", Kind::OptInt),
    f(9, "completionMode", Kind::Str),
    f(10, "suspend", Kind::Bool),
];
const JOB: &[Field] = &[
    f(1, "metadata", Kind::Msg(OBJECT_META)),
    f(2, "spec", Kind::Msg(JOB_SPEC)),
];
const CRON_JOB: &[Field] = &[
    f(1, "metadata", Kind::Msg(OBJECT_META)),
    f(
        2,
        "spec",
        Kind::Msg(&[
            f(1, "schedule", Kind::Str),
            f(2, "startingDeadlineSeconds", Kind::OptInt),
            f(3, "concurrencyPolicy", Kind::Str),
            f(4, "suspend", Kind::Bool),
            f(
                5,
                "jobTemplate",
                Kind::Msg(&[
                    f(1, "metadata", Kind::Msg(OBJECT_META)),
                    f(2, "spec", Kind::Msg(JOB_SPEC)),
                ]),
            ),
            f(6, "successfulJobsHistoryLimit", Kind::OptInt),
            f(7, "failedJobsHistoryLimit", Kind::OptInt),
            f(8, "timeZone", Kind::Str),
        ]),
    ),
];
const SERVICE_PORT: &[Field] = &[
    f(1, "name", Kind::Str),
    f(2, "protocol", Kind::Str),
    f(3, "port", Kind::OptInt),
    f(4, "targetPort", Kind::IntOrStr),
    f(5, "nodePort", Kind::Int),
    f(6, "appProtocol", Kind::Str),
];
const SERVICE: &[Field] = &[
    f(1, "metadata", Kind::Msg(OBJECT_META)),
    f(
        2,
        "spec",
        Kind::Msg(&[
            r(1, "ports", Kind::Msg(SERVICE_PORT)),
            f(2, "selector", Kind::MapStr),
            f(3, "clusterIP", Kind::Str),
            f(4, "type", Kind::Str),
            r(5, "externalIPs", Kind::Str),
            f(7, "sessionAffinity", Kind::Str),
            f(8, "loadBalancerIP", Kind::Str),
            f(10, "externalName", Kind::Str),
            f(11, "externalTrafficPolicy", Kind::Str),
            f(17, "ipFamilyPolicy", Kind::Str),
            r(18, "clusterIPs", Kind::Str),
            r(19, "ipFamilies", Kind::Str),
            f(22, "internalTrafficPolicy", Kind::Str),
        ]),
    ),
];
const PRIORITY_CLASS: &[Field] = &[
    f(1, "metadata", Kind::Msg(OBJECT_META)),
    f(2, "value", Kind::OptInt),
    f(3, "globalDefault", Kind::Flag),
    f(4, "description", Kind::Str),
    f(5, "preemptionPolicy", Kind::Str),
];
const RESOURCE_QUOTA: &[Field] = &[
    f(1, "metadata", Kind::Msg(OBJECT_META)),
    f(
        2,
        "spec",
        Kind::Msg(&[f(1, "hard", Kind::MapQuantity), r(2, "scopes", Kind::Str)]),
    ),
];
const PDB: &[Field] = &[
    f(1, "metadata", Kind::Msg(OBJECT_META)),
    f(
        2,
        "spec",
        Kind::Msg(&[
            f(1, "minAvailable", Kind::IntOrStr),
            f(2, "selector", Kind::Msg(LABEL_SELECTOR)),
            f(3, "maxUnavailable", Kind::IntOrStr),
            f(4, "unhealthyPodEvictionPolicy", Kind::Str),
        ]),
    ),
];
const DELETE_OPTIONS: &[Field] = &[
    f(1, "gracePeriodSeconds", Kind::OptInt),
    f(
        2,
        "preconditions",
        Kind::Msg(&[f(1, "uid", Kind::Str), f(2, "resourceVersion", Kind::Str)]),
    ),
    f(3, "orphanDependents", Kind::Bool),
    f(4, "propagationPolicy", Kind::Str),
    r(5, "dryRun", Kind::Str),
];
/// policy/v1 Eviction (`kubectl drain`).
const EVICTION: &[Field] = &[
    f(1, "metadata", Kind::Msg(OBJECT_META)),
    f(2, "deleteOptions", Kind::Msg(DELETE_OPTIONS)),
];
const CROSS_VERSION_OBJECT_REFERENCE: &[Field] = &[
    f(1, "kind", Kind::Str),
    f(2, "name", Kind::Str),
    f(3, "apiVersion", Kind::Str),
];
/// autoscaling/v1 HorizontalPodAutoscaler (`kubectl autoscale`).
const HPA_V1: &[Field] = &[
    f(1, "metadata", Kind::Msg(OBJECT_META)),
    f(
        2,
        "spec",
        Kind::Msg(&[
            f(
                1,
                "scaleTargetRef",
                Kind::Msg(CROSS_VERSION_OBJECT_REFERENCE),
            ),
            f(2, "minReplicas", Kind::OptInt),
            f(3, "maxReplicas", Kind::OptInt),
            f(4, "targetCPUUtilizationPercentage", Kind::OptInt),
        ]),
    ),
];
const METRIC_TARGET: &[Field] = &[
    f(1, "type", Kind::Str),
    f(4, "averageUtilization", Kind::OptInt),
];
/// autoscaling/v2 HorizontalPodAutoscaler: the resource metrics `kubectl autoscale` sets.
const HPA_V2: &[Field] = &[
    f(1, "metadata", Kind::Msg(OBJECT_META)),
    f(
        2,
        "spec",
        Kind::Msg(&[
            f(
                1,
                "scaleTargetRef",
                Kind::Msg(CROSS_VERSION_OBJECT_REFERENCE),
            ),
            f(2, "minReplicas", Kind::OptInt),
            f(3, "maxReplicas", Kind::OptInt),
            r(
                4,
                "metrics",
                Kind::Msg(&[
                    f(1, "type", Kind::Str),
                    f(
                        4,
                        "resource",
                        Kind::Msg(&[
                            f(1, "name", Kind::Str),
                            f(2, "target", Kind::Msg(METRIC_TARGET)),
                        ]),
                    ),
                ]),
            ),
        ]),
    ),
];
const INGRESS_BACKEND: &[Field] = &[
    f(
        3,
        "resource",
        Kind::Msg(&[
            f(1, "apiGroup", Kind::Str),
            f(2, "kind", Kind::Str),
            f(3, "name", Kind::Str),
        ]),
    ),
    f(
        4,
        "service",
        Kind::Msg(&[
            f(1, "name", Kind::Str),
            f(
                2,
                "port",
                Kind::Msg(&[f(1, "name", Kind::Str), f(2, "number", Kind::Int)]),
            ),
        ]),
    ),
];
const INGRESS: &[Field] = &[
    f(1, "metadata", Kind::Msg(OBJECT_META)),
    f(
        2,
        "spec",
        Kind::Msg(&[
            f(1, "defaultBackend", Kind::Msg(INGRESS_BACKEND)),
            r(
                2,
                "tls",
                Kind::Msg(&[r(1, "hosts", Kind::Str), f(2, "secretName", Kind::Str)]),
            ),
            r(
                3,
                "rules",
                Kind::Msg(&[
                    f(1, "host", Kind::Str),
                    f(
                        2,
                        "ingressRuleValue",
                        Kind::Inline(&[f(
                            1,
                            "http",
                            Kind::Msg(&[r(
                                1,
                                "paths",
                                Kind::Msg(&[
                                    f(1, "path", Kind::Str),
                                    f(2, "backend", Kind::Msg(INGRESS_BACKEND)),
                                    f(3, "pathType", Kind::Str),
                                ]),
                            )]),
                        )]),
                    ),
                ]),
            ),
            f(4, "ingressClassName", Kind::Str),
        ]),
    ),
];

/// authorization.k8s.io/v1 SelfSubjectAccessReview (`kubectl auth can-i`).
const SELF_SUBJECT_ACCESS_REVIEW: &[Field] = &[
    f(1, "metadata", Kind::Msg(OBJECT_META)),
    f(
        2,
        "spec",
        Kind::Msg(&[
            f(
                1,
                "resourceAttributes",
                Kind::Msg(&[
                    f(1, "namespace", Kind::Str),
                    f(2, "verb", Kind::Str),
                    f(3, "group", Kind::Str),
                    f(4, "version", Kind::Str),
                    f(5, "resource", Kind::Str),
                    f(6, "subresource", Kind::Str),
                    f(7, "name", Kind::Str),
                ]),
            ),
            f(
                2,
                "nonResourceAttributes",
                Kind::Msg(&[f(1, "path", Kind::Str), f(2, "verb", Kind::Str)]),
            ),
        ]),
    ),
];

/// authentication.k8s.io/v1 TokenRequest (`kubectl create token`).
const TOKEN_REQUEST: &[Field] = &[
    f(1, "metadata", Kind::Msg(OBJECT_META)),
    f(
        2,
        "spec",
        Kind::Msg(&[
            r(1, "audiences", Kind::Str),
            f(
                3,
                "boundObjectRef",
                Kind::Msg(&[
                    f(1, "kind", Kind::Str),
                    f(2, "apiVersion", Kind::Str),
                    f(3, "name", Kind::Str),
                    f(4, "uid", Kind::Str),
                ]),
            ),
            f(4, "expirationSeconds", Kind::OptInt),
        ]),
    ),
];

/// authentication.k8s.io/v1 SelfSubjectReview (`kubectl auth whoami`): metadata only.
const SELF_SUBJECT_REVIEW: &[Field] = &[f(1, "metadata", Kind::Msg(OBJECT_META))];

fn schema(api_version: &str, kind: &str) -> Option<&'static [Field]> {
    Some(match (api_version, kind) {
        ("v1", "Namespace") => NAMESPACE,
        ("v1", "ConfigMap") => CONFIG_MAP,
        ("v1", "Secret") => SECRET,
        ("v1", "ServiceAccount") => SERVICE_ACCOUNT,
        ("rbac.authorization.k8s.io/v1", "Role" | "ClusterRole") => ROLE,
        ("rbac.authorization.k8s.io/v1", "RoleBinding" | "ClusterRoleBinding") => ROLE_BINDING,
        ("v1", "Pod") => POD,
        ("v1", "Service") => SERVICE,
        ("v1", "ResourceQuota") => RESOURCE_QUOTA,
        ("apps/v1", "Deployment") => DEPLOYMENT,
        ("batch/v1", "Job") => JOB,
        ("batch/v1", "CronJob") => CRON_JOB,
        ("scheduling.k8s.io/v1", "PriorityClass") => PRIORITY_CLASS,
        ("policy/v1", "PodDisruptionBudget") => PDB,
        ("policy/v1", "Eviction") => EVICTION,
        ("autoscaling/v1", "HorizontalPodAutoscaler") => HPA_V1,
        ("autoscaling/v2", "HorizontalPodAutoscaler") => HPA_V2,
        ("networking.k8s.io/v1", "Ingress") => INGRESS,
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview") => SELF_SUBJECT_ACCESS_REVIEW,
        ("authentication.k8s.io/v1", "SelfSubjectReview") => SELF_SUBJECT_REVIEW,
        ("authentication.k8s.io/v1", "TokenRequest") => TOKEN_REQUEST,
        _ => return None,
    })
}

/// One protobuf field as read off the wire.
enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

fn varint(buf: &mut &[u8]) -> Result<u64, ProtoError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf
            .split_first()
            .ok_or(ProtoError::Malformed("truncated varint"))?;
        *buf = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(ProtoError::Malformed("varint too long"))
}

fn fields(mut buf: &[u8]) -> Result<Vec<(u64, Wire<'_>)>, ProtoError> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let tag = varint(&mut buf)?;
        let wire = match tag & 7 {
            0 => Wire::Varint(varint(&mut buf)?),
            2 => {
                let len = varint(&mut buf)? as usize;
                if len > buf.len() {
                    return Err(ProtoError::Malformed("truncated field"));
                }
                let (b, rest) = buf.split_at(len);
                buf = rest;
                Wire::Bytes(b)
            }
            1 | 5 => {
                let n = if tag & 7 == 1 { 8 } else { 4 };
                if n > buf.len() {
                    return Err(ProtoError::Malformed("truncated field"));
                }
                buf = &buf[n..];
                Wire::Fixed
            }
            _ => return Err(ProtoError::Malformed("unsupported wire type")),
        };
        out.push((tag >> 3, wire));
    }
    Ok(out)
}

fn text(b: &[u8]) -> Result<String, ProtoError> {
    String::from_utf8(b.to_vec()).map_err(|_| ProtoError::Malformed("invalid UTF-8"))
}

fn value(kind: Kind, w: &Wire<'_>, depth: usize) -> Result<Option<Value>, ProtoError> {
    if depth > 32 {
        return Err(ProtoError::Malformed("nested too deeply"));
    }
    Ok(match (kind, w) {
        (Kind::Str, Wire::Bytes(b)) => Some(json!(text(b)?)),
        (Kind::Bool, Wire::Varint(v)) => Some(json!(*v != 0)),
        (Kind::Flag, Wire::Varint(v)) => (*v != 0).then_some(json!(true)),
        (Kind::Int, Wire::Varint(v)) => (*v != 0).then(|| json!(*v as i64)),
        (Kind::OptInt, Wire::Varint(v)) => Some(json!(*v as i64)),
        (Kind::IntOrStr, Wire::Bytes(b)) => {
            let (mut kind, mut int, mut text_val) = (0u64, 0i64, String::new());
            for (n, w) in fields(b)? {
                match (n, w) {
                    (1, Wire::Varint(v)) => kind = v,
                    (2, Wire::Varint(v)) => int = v as i32 as i64,
                    (3, Wire::Bytes(s)) => text_val = text(s)?,
                    _ => {}
                }
            }
            Some(if kind == 1 {
                json!(text_val)
            } else {
                json!(int)
            })
        }
        (Kind::Msg(schema), Wire::Bytes(b)) => Some(message(schema, b, depth + 1)?),
        (Kind::Time, Wire::Bytes(b)) => {
            let secs = fields(b)?
                .into_iter()
                .find_map(|(n, w)| match (n, w) {
                    (1, Wire::Varint(v)) => Some(v as i64),
                    _ => None,
                })
                .unwrap_or(0);
            (secs != 0).then(|| {
                let t = chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default();
                json!(t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            })
        }
        (Kind::MapStr | Kind::MapBytes | Kind::MapQuantity | Kind::Inline(_), Wire::Bytes(_)) => {
            None // handled by the caller
        }
        _ => return Err(ProtoError::Malformed("wire type does not match the field")),
    })
}

/// A `resource.Quantity` message's string.
fn quantity(b: &[u8]) -> Result<Value, ProtoError> {
    for (n, w) in fields(b)? {
        if let (1, Wire::Bytes(s)) = (n, w) {
            return Ok(json!(text(s)?));
        }
    }
    Ok(json!("0"))
}

fn message(schema: &[Field], buf: &[u8], depth: usize) -> Result<Value, ProtoError> {
    let mut obj = Map::new();
    for (num, w) in fields(buf)? {
        let Some(field) = schema.iter().find(|f| f.num == num) else {
            continue; // fields barge does not model (status, managedFields, …)
        };
        match field.kind {
            Kind::Inline(inner) => {
                let Wire::Bytes(b) = w else {
                    return Err(ProtoError::Malformed("inline field is not a message"));
                };
                if let Value::Object(m) = message(inner, b, depth + 1)? {
                    obj.extend(m);
                }
            }
            Kind::MapStr | Kind::MapBytes | Kind::MapQuantity => {
                let Wire::Bytes(entry) = w else {
                    return Err(ProtoError::Malformed("map entry is not a message"));
                };
                let (mut k, mut v) = (String::new(), Value::String(String::new()));
                for (n, ew) in fields(entry)? {
                    match (n, ew) {
                        (1, Wire::Bytes(b)) => k = text(b)?,
                        (2, Wire::Bytes(b)) if matches!(field.kind, Kind::MapStr) => {
                            v = json!(text(b)?)
                        }
                        (2, Wire::Bytes(b)) if matches!(field.kind, Kind::MapQuantity) => {
                            v = quantity(b)?
                        }
                        (2, Wire::Bytes(b)) => {
                            v = json!(base64::engine::general_purpose::STANDARD.encode(b))
                        }
                        _ => {}
                    }
                }
                let map = obj
                    .entry(field.name)
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Some(m) = map.as_object_mut() {
                    m.insert(k, v);
                }
            }
            _ => {
                let Some(v) = value(field.kind, &w, depth)? else {
                    continue;
                };
                if field.repeated {
                    let list = obj.entry(field.name).or_insert_with(|| json!([]));
                    if let Some(l) = list.as_array_mut() {
                        l.push(v);
                    }
                } else if v != json!("") {
                    obj.insert(field.name.into(), v);
                }
            }
        }
    }
    Ok(Value::Object(obj))
}

/// Decodes a `k8s\0`-prefixed protobuf object into its JSON form (with kind/apiVersion).
pub fn decode(body: &[u8]) -> Result<Value, ProtoError> {
    let rest = body.strip_prefix(b"k8s\0").ok_or(ProtoError::Magic)?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    for (n, w) in fields(rest)? {
        match (n, w) {
            (1, Wire::Bytes(tm)) => {
                for (tn, tw) in fields(tm)? {
                    match (tn, tw) {
                        (1, Wire::Bytes(b)) => api_version = text(b)?,
                        (2, Wire::Bytes(b)) => kind = text(b)?,
                        _ => {}
                    }
                }
            }
            (2, Wire::Bytes(b)) => raw = b,
            _ => {}
        }
    }
    let schema = schema(&api_version, &kind).ok_or_else(|| {
        ProtoError::Unsupported(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (barge decodes protobuf only for the kinds of kubectl's create subcommands; got {api_version} {kind})"
        ))
    })?;
    let mut obj = message(schema, raw, 0)?;
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(kind);
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(num: u64, data: &[u8]) -> Vec<u8> {
        let mut v = vec![((num << 3) | 2) as u8, data.len() as u8];
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn decodes_a_configmap() {
        let entry = [field(1, b"k"), field(2, b"v")].concat();
        let label = [field(1, b"app"), field(2, b"web")].concat();
        let meta = [field(1, b"cm1"), field(11, &label), field(8, &[])].concat();
        let cm = [field(1, &meta), field(2, &entry), vec![4 << 3, 1]].concat();
        let tm = [field(1, b"v1"), field(2, b"ConfigMap")].concat();
        let unknown = [field(1, &tm), field(2, &cm)].concat();
        let body = [b"k8s\0".to_vec(), unknown].concat();
        assert_eq!(
            decode(&body).unwrap(),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "immutable": true,
                   "metadata": {"name": "cm1", "labels": {"app": "web"}}, "data": {"k": "v"}})
        );
        assert_eq!(decode(b"{}"), Err(ProtoError::Magic));
        assert!(decode(b"k8s\0\x0a\x05").is_err());
    }
}
