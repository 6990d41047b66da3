"""Formatters render a scan report: table, JSON, SARIF 2.1.0, JUnit XML, markdown."""
