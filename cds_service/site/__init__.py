"""A site's configuration (`CDS_SITE_CONFIG`, TOML): which recommendations show, the guideline's
numbers, the site's own order codes, override reasons and snooze.

It is applied around the rules and the card builder, never inside a rule: the engine leaves
out topics that are off and reads the thresholds through the assessment; the card builder adds
the site's codings and override reasons; the protocol handler keeps silent and snoozed cards
out of the answer and logs them. docs/operators.md, "Configure for your site", describes the file;
`examples/site.toml` is a commented example.
"""
