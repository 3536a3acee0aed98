"""``pullwatch preflight``: the audit's pull checks on Kubernetes manifests, before they are applied.

One job per module, data flowing one way::

    manifests.py  files / folders / stdin  ->  ManifestSet (objects with file and line)
    check.py      ManifestSet + the target cluster's facts (or none)  ->  the audit's findings
    locate.py     findings + ManifestSet  ->  PreflightFinding (file, line, object)  -> PreflightResult
    output.py     PreflightResult  ->  terminal lines | JSON | SARIF 2.1.0 | GitHub annotations
"""
