"""deploy/k8s/base against the Kubernetes API's own OpenAPI schemas, strictly.

Parsing and the cross-checks in test_k8s.py say the manifests agree with the code; these say
the API server would accept them: every field known, typed and placed where it belongs (a typo
like `imagePullPolicyy` or a probe under the wrong key fails). The schemas come with the
`kubernetes-validate` package (no cluster needed). KEDA's ScaledObject is a custom resource
without a schema there; test_k8s.py checks its trigger and target.
"""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from tests.deploy.files import k8s_objects

# The oldest Kubernetes the package has schemas for (the manifests need autoscaling/v2 and
# policy/v1: GA since 1.23 and 1.21) and the newest it knows.
KUBERNETES_VERSIONS = ("1.25.0", kubernetes_validate.latest_version())
CUSTOM_RESOURCES = {("keda.sh/v1alpha1", "ScaledObject")}


def _built_in(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if (o["apiVersion"], o["kind"]) not in CUSTOM_RESOURCES]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_base_object_is_valid_for_the_api(version: str) -> None:
    objects = _built_in(k8s_objects())
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            name = f"{obj['kind']}/{obj['metadata']['name']}"
            pytest.fail(f"{name} is not valid for Kubernetes {version}: {exc.message}")
    kinds = {o["kind"] for o in objects}
    assert kinds >= {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Job",
        "ServiceAccount",
    }


def test_a_misplaced_field_fails_validation() -> None:
    """The check can fail: one unknown container field is enough."""
    [deployment] = [o for o in k8s_objects() if o["kind"] == "Deployment"][:1]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinessProbes"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)
