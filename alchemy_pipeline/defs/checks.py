"""Asset check results from the domain's data-quality findings."""

import dagster as dg

from alchemy_pipeline.domain.market.quality import Finding


def check_result(name: str, finding: Finding, severity=dg.AssetCheckSeverity.ERROR) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=name,
        passed=finding.passed,
        severity=severity,
        description=finding.description,
        metadata=finding.metadata,
    )
