"""Report writers: they read a manifest and render it (markdown, HTML with inline SVG, the precision
section), compare two manifests (diff), and turn verdicts into exit codes (gating)."""
