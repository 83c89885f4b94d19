# Rego over a verified SLSA v1 provenance attestation (see README: "Attestations").
# input: {"image": {"reference", "digest"}, "statement": <in-toto statement>, "predicate": <its predicate>}
package umpire

# Releases come from main or from a version tag.
deny contains msg if {
    ref := input.predicate.buildDefinition.externalParameters.workflow.ref
    not ref == "refs/heads/main"
    not startswith(ref, "refs/tags/v")
    msg := sprintf("%v was built from %v; only main and v* tags ship", [input.image.reference, ref])
}

# The build must say which workflow file ran.
deny contains msg if {
    not input.predicate.buildDefinition.externalParameters.workflow.path
    msg := "the provenance does not name the workflow that ran"
}
