"""Built-in secret rules: which file, line and rule each planted secret is reported at, what is
deliberately not reported, and hostile inputs.

Synthetic secrets are assembled at run time from a seeded generator, so this file holds no
credential-shaped literal (secret scanners, ours included, would rightly flag them).
"""

from __future__ import annotations

import base64
import json
import random
import string
from pathlib import Path

import pytest

from dutyguard.core.model import ScanReport
from dutyguard.core.policy import Policy
from dutyguard.core.rule import RuleRegistry
from dutyguard.engine import Scanner
from dutyguard.formats.interface import FormatContext, OutputFormat
from dutyguard.limits import DEFAULT_LIMITS, Limits
from dutyguard.rules.secret_engine import MAX_CANDIDATES, redact, shannon_entropy
from dutyguard.rules.secret_patterns import builtin_rules
from dutyguard.sources.interface import InputFile
from dutyguard.sources.text import TextFile, TextSource
from tests.conftest import make_scanner

B62 = string.ascii_letters + string.digits
HEX = "0123456789abcdef"
UPPER_DIGITS = string.ascii_uppercase + string.digits
BECH32 = "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L"


def tok(alphabet: str, n: int, seed: int) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(alphabet) for _ in range(n))


def b64url(obj: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


@pytest.fixture(scope="module")
def registry() -> RuleRegistry:
    return RuleRegistry(builtin_rules())


def scan_tree(root: Path, registry: RuleRegistry, limits: Limits = DEFAULT_LIMITS) -> ScanReport:
    return Scanner(registry=registry, sources=(TextSource(),), policy=Policy(), limits=limits).scan(
        [str(root)]
    )


def found(report: ScanReport, root: Path) -> set[tuple[str, int | None, str]]:
    return {
        (str(Path(f.location.file).relative_to(root)), f.location.line, f.rule_id)
        for f in report.findings
        if f.rule_id.startswith("secrets.")
    }


def scan_text(
    tmp_path: Path, registry: RuleRegistry, name: str, text: str | bytes
) -> set[tuple[int | None, str]]:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    report = scan_tree(path, registry)
    assert not report.errors, report.errors
    return {(f.location.line, f.rule_id) for f in report.findings}


# --- detect-secrets' planted secrets ------------------------------------------------------------
DETECT_SECRETS_EXPECTED = {
    ("files/private_key", 1, "secrets.private-key"),
    ("config.env", 1, "secrets.dotenv-secret"),
    ("config.ini", 2, "secrets.generic-password"),
    ("config.ini", 32, "secrets.generic-secret"),
    ("config.md", 10, "secrets.generic-secret"),
    ("config.yaml", 12, "secrets.generic-secret"),
}


def test_detect_secrets_planted_secrets_found_at_file_line_rule(
    shared_data: Path, registry: RuleRegistry
) -> None:
    root = shared_data / "detect-secrets" / "test_data"
    report = scan_tree(root, registry)
    assert not report.errors
    # Exact equality: every planted secret at its line and rule, and nothing else in the tree.
    assert found(report, root) == DETECT_SECRETS_EXPECTED


@pytest.mark.parametrize(
    ("file", "line", "why"),
    [
        ("config.ini", 33, "foreign_key_id: an id, not a key"),
        ("config.ini", 10, "aws_secret_key = 23456789a1: ten characters, not an AWS secret"),
        (
            "config.ini",
            26,
            "digits only: not reported (detect-secrets flags it); the pragma is still a request",
        ),
        ("config.yaml", 5, "AKIATESTTESTTESTTEST: entropy far below a real key id"),
        ("config.yaml", 16, "allowlisted_id: an id"),
        ("config.yaml", 18, "a UUID"),
        ("short_files/first_line.php", 1, "notHighEnoughEntropy: letters only"),
        ("short_files/first_line.php", 2, "0123456789a: a sequence"),
        ("sample.diff", 72, "hashed_secret: a hash of a secret is not one"),
        ("baseline.file", 64, "hashed_secret in a detect-secrets baseline"),
        ("word_list.txt", 3, "AKIANOTREAL: too short"),
    ],
)
def test_detect_secrets_non_secrets_not_reported(
    shared_data: Path, registry: RuleRegistry, file: str, line: int, why: str
) -> None:
    root = shared_data / "detect-secrets" / "test_data"
    report = scan_tree(root / file, registry)
    assert not [f for f in report.findings if f.location.line == line], why


def test_detect_secrets_pragma_does_not_silence_finding(shared_data: Path) -> None:
    path = shared_data / "detect-secrets" / "test_data" / "config.yaml"
    report = make_scanner().scan([str(path)])
    assert [(f.location.line, f.rule_id) for f in report.findings] == [(12, "secrets.generic-secret")]
    assert [(s.line, s.syntax) for s in report.suppression_requests] == [(12, "pragma: allowlist secret")]
    assert report.exit_code == 0  # medium: below the default gate, but reported regardless of the pragma


# --- one planted secret per built-in rule ---------------------------------------------------------
def _sa_json() -> str:
    pem = "-----BEGIN PRIVATE KEY-----\\n" + "\\n".join(tok(B62 + "+/", 64, 100 + i) for i in range(12))
    pem += "\\n-----END PRIVATE KEY-----\\n"
    doc = {
        "type": "service_account",
        "project_id": "shop-prod",
        "private_key_id": tok(HEX, 40, 1),
        "private_key": pem,
        "client_email": "deployer@shop-prod.iam.gserviceaccount.com",
    }
    return json.dumps(doc, indent=2) + "\n"


def _jwt() -> str:
    return (
        b64url({"alg": "HS256", "typ": "JWT"})
        + "."
        + b64url({"sub": "build-bot", "iat": 1716239022, "scope": "deploy"})
        + "."
        + tok(B62 + "_-", 43, 7)
    )


def _pem(kind: str) -> str:
    body = "\n".join(tok(B62 + "+/", 64, 200 + i) for i in range(10))
    return f"-----BEGIN {kind}PRIVATE KEY-----\n{body}\n-----END {kind}PRIVATE KEY-----\n"


def _docker_config() -> str:
    auth = base64.b64encode(f"ci-bot:{tok(B62, 24, 9)}".encode()).decode()
    return json.dumps({"auths": {"registry.shop.internal": {"auth": auth}}}, indent=2) + "\n"


def _dockerconfigjson() -> str:
    inner = json.dumps(
        {"auths": {"ghcr.io": {"auth": base64.b64encode(b"bot:" + tok(B62, 20, 3).encode()).decode()}}}
    )
    value = base64.b64encode(inner.encode()).decode()
    return (
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: pull\ntype: kubernetes.io/dockerconfigjson\n"
        f"data:\n  .dockerconfigjson: {value}\n"
    )


TEAMS = (
    "https://shop.webhook.office.com/webhookb2/"
    + "-".join(tok("abcdef0123456789", n, 40 + n) for n in (8, 4, 4, 4, 12))
    + "@"
    + "-".join(tok("abcdef0123456789", n, 50 + n) for n in (8, 4, 4, 4, 12))
    + "/IncomingWebhook/"
    + tok("abcdef0123456789", 32, 61)
    + "/"
    + "-".join(tok("abcdef0123456789", n, 70 + n) for n in (8, 4, 4, 4, 12))
)

PLANTED: list[tuple[str, str, str, int]] = [
    # (rule, file name, content, line of the secret)
    (
        "aws-access-key-id",
        "config.ini",
        "[default]\nregion = eu-west-1\naws_access_key_id = AKIA"
        + tok("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16, 1)
        + "\n",
        3,
    ),
    (
        "aws-secret-access-key",
        "config.ini",
        "[default]\nregion = eu-west-1\naws_secret_access_key = " + tok(B62 + "/+", 40, 2) + "\n",
        3,
    ),
    ("gcp-service-account-key", "sa.json", _sa_json(), 5),
    (
        "gcp-api-key",
        "maps.js",
        "const client = new Maps({\n  apiKey: 'AIza" + tok(B62 + "_-", 35, 3) + "',\n});\n",
        2,
    ),
    (
        "azure-storage-account-key",
        "appsettings.json",
        '{\n  "Storage": "DefaultEndpointsProtocol=https;AccountName=shop;AccountKey='
        + tok(B62 + "+/", 86, 4)
        + '==;EndpointSuffix=core.windows.net"\n}\n',
        2,
    ),
    (
        "azure-ad-client-secret",
        "auth.env.yaml",
        "oidc:\n  client_secret: " + tok(B62, 3, 5) + "8Q~" + tok(B62 + "_.", 34, 6) + "\n",
        2,
    ),
    ("alibaba-access-key-id", "oss.py", 'ACCESS_ID = "LTAI' + tok(B62, 20, 7) + '"\n', 1),
    ("digitalocean-token", "do.sh", "doctl auth init -t dop_v1_" + tok(HEX, 64, 8) + "\n", 1),
    ("vault-token", "vault.sh", "export VAULT_TOKEN=hvs." + tok(B62, 95, 9) + "\n", 1),
    (
        "terraform-cloud-token",
        "credentials.tfrc.json",
        '{"credentials": {"app.terraform.io": {"token": "'
        + tok(B62, 14, 10)
        + ".atlasv1."
        + tok(B62, 64, 11)
        + '"}}}\n',
        1,
    ),
    ("private-key", "deploy_key", "# deploy key\n" + _pem("RSA "), 2),
    ("private-key", "id_ed25519", _pem("OPENSSH "), 1),
    ("age-secret-key", "keys.txt", "# created: 2024-01-01\nAGE-SECRET-KEY-1" + tok(BECH32, 58, 12) + "\n", 2),
    (
        "github-pat",
        "release.sh",
        "#!/bin/sh\nGH_TOKEN=ghp_" + tok(B62, 36, 13) + " gh release create v1\n",
        2,
    ),
    (
        "github-fine-grained-pat",
        "ci.env.txt",
        "github_pat_" + tok(B62, 22, 14) + "_" + tok(B62, 59, 15) + "\n",
        1,
    ),
    ("github-oauth-token", "hub.yml", "github.com:\n- oauth_token: gho_" + tok(B62, 36, 16) + "\n", 2),
    ("github-app-token", "app.ts", "const installation = 'ghs_" + tok(B62, 36, 17) + "';\n", 1),
    ("github-refresh-token", "app.ts", "\n\nrefresh('ghr_" + tok(B62, 36, 18) + "')\n", 3),
    ("gitlab-pat", ".gitlab-ci.yml", "variables:\n  GL_TOKEN: glpat-" + tok(B62, 20, 19) + "\n", 2),
    ("gitlab-runner-token", "config.toml", '[[runners]]\n  token = "glrt-' + tok(B62, 20, 20) + '"\n', 2),
    (
        "gitlab-ci-token",
        "trigger.sh",
        "curl -X POST -F token=glptt-" + tok(HEX, 40, 21) + " https://gitlab.shop/api\n",
        1,
    ),
    (
        "gitlab-deploy-token",
        "pull.sh",
        "docker login -u deploy -p gldt-" + tok(B62, 20, 22) + " registry.gitlab.shop\n",
        1,
    ),
    (
        "gitlab-token",
        "feed.txt",
        "https://gitlab.shop/dashboard/projects.atom?feed_token=glft-" + tok(B62, 20, 23) + "\n",
        1,
    ),
    (
        "circleci-token",
        "circle.sh",
        "CIRCLE_TOKEN=CCIPAT_" + tok(B62, 22, 24) + "_" + tok(HEX, 40, 25) + "\n",
        1,
    ),
    ("buildkite-token", "bk.sh", "BUILDKITE_API_TOKEN=bkua_" + tok(HEX, 40, 26) + "\n", 1),
    ("npm-access-token", "publish.yml", "env:\n  NODE_AUTH_TOKEN: npm_" + tok(B62, 36, 27) + "\n", 2),
    (
        "npmrc-auth",
        ".npmrc",
        "registry=https://npm.shop.internal/\n//npm.shop.internal/:_authToken=" + tok(B62, 40, 28) + "\n",
        2,
    ),
    (
        "pypi-upload-token",
        ".pypirc",
        "[pypi]\nusername = __token__\npassword = pypi-AgEIcHlwaS5vcmc" + tok(B62 + "_-", 60, 29) + "\n",
        3,
    ),
    ("rubygems-api-key", "credentials", "---\n:rubygems_api_key: rubygems_" + tok(HEX, 48, 30) + "\n", 2),
    ("artifactory-token", "gradle.properties", "artifactory_password=AKCp" + tok(B62, 69, 31) + "\n", 1),
    ("docker-config-auth", "config.json", _docker_config(), 4),
    ("docker-config-json", "pull-secret.yaml", _dockerconfigjson(), 7),
    (
        "slack-bot-token",
        "bot.py",
        "SLACK = 'xoxb-"
        + tok("0123456789", 12, 32)
        + "-"
        + tok("0123456789", 12, 33)
        + "-"
        + tok(B62, 24, 34)
        + "'\n",
        1,
    ),
    (
        "slack-user-token",
        "user.py",
        "T = 'xoxp-"
        + "-".join(tok("0123456789", 12, 35 + i) for i in range(3))
        + "-"
        + tok(HEX, 32, 38)
        + "'\n",
        1,
    ),
    (
        "slack-app-token",
        "app.env.txt",
        "xapp-1-A"
        + tok(UPPER_DIGITS, 10, 39)
        + "-"
        + tok("0123456789", 13, 40)
        + "-"
        + tok(HEX, 64, 41)
        + "\n",
        1,
    ),
    ("slack-config-token", "cfg.txt", "xoxe.xoxp-1-" + tok(UPPER_DIGITS, 164, 42) + "\n", 1),
    (
        "slack-legacy-token",
        "legacy.txt",
        "xoxs-"
        + tok("0123456789", 10, 43)
        + "-"
        + tok("0123456789", 10, 44)
        + "-"
        + tok("0123456789", 12, 45)
        + "-"
        + tok(HEX, 64, 46)
        + "\n",
        1,
    ),
    (
        "slack-webhook-url",
        "notify.sh",
        "curl -X POST https://hooks.slack.com/services/T"
        + tok(UPPER_DIGITS, 8, 47)
        + "/B"
        + tok(UPPER_DIGITS, 8, 48)
        + "/"
        + tok(B62, 24, 49)
        + " -d @msg.json\n",
        1,
    ),
    (
        "discord-webhook-url",
        "notify.py",
        "HOOK = 'https://discord.com/api/webhooks/"
        + tok("0123456789", 18, 50)
        + "/"
        + tok(B62 + "_-", 68, 51)
        + "'\n",
        1,
    ),
    ("teams-webhook-url", "notify.ps1", "$hook = '" + TEAMS + "'\n", 1),
    (
        "stripe-secret-key",
        "Dockerfile",
        "FROM python:3.12\nENV STRIPE_API_KEY=sk_live_" + tok(B62, 24, 52) + "\n",
        2,
    ),
    (
        "square-token",
        "square.rb",
        "client = Square::Client.new(access_token: 'sq0atp-" + tok(B62 + "_-", 22, 53) + "')\n",
        1,
    ),
    (
        "braintree-token",
        "pay.py",
        "gateway = BraintreeGateway(access_token='access_token$production$"
        + tok(string.ascii_lowercase + string.digits, 16, 54)
        + "$"
        + tok(HEX, 32, 55)
        + "')\n",
        1,
    ),
    (
        "twilio-api-key",
        "sms.py",
        "client = Client('SK" + tok(HEX, 32, 56) + "', api_secret, account_sid)\n",
        1,
    ),
    (
        "sendgrid-api-key",
        "mail.py",
        "sg = SendGridAPIClient('SG." + tok(B62 + "_-", 22, 57) + "." + tok(B62 + "_-", 43, 58) + "')\n",
        1,
    ),
    ("mailchimp-api-key", "news.php", "$mc = new MailChimp('" + tok(HEX, 32, 59) + "-us12');\n", 1),
    (
        "openai-api-key",
        "llm.py",
        "openai.api_key = 'sk-proj-" + tok(B62, 74, 60) + "T3BlbkFJ" + tok(B62, 74, 61) + "'\n",
        1,
    ),
    (
        "anthropic-api-key",
        "llm.py",
        "client = Anthropic(api_key='sk-ant-api03-" + tok(B62 + "_-", 93, 62) + "AA')\n",
        1,
    ),
    ("huggingface-token", "hf.py", "login(token='hf_" + tok(string.ascii_letters, 34, 63) + "')\n", 1),
    (
        "shopify-token",
        "shop.rb",
        "ShopifyAPI::Context.setup(api_key: k, api_secret_key: 'shpss_" + tok(HEX, 32, 64) + "')\n",
        1,
    ),
    (
        "databricks-token",
        "dbx.cfg",
        "[DEFAULT]\nhost = https://shop.cloud.databricks.com\ntoken = dapi" + tok(HEX, 32, 65) + "\n",
        3,
    ),
    (
        "grafana-token",
        "grafana.ini",
        "[auth]\napi = glsa_" + tok(B62, 32, 66) + "_" + tok(HEX, 8, 67) + "\n",
        2,
    ),
    ("atlassian-api-token", "jira.py", "JIRA = 'ATATT3" + tok(B62, 186, 68) + "'\n", 1),
    ("doppler-token", "doppler.sh", "doppler configure set token dp.pt." + tok(B62, 43, 69) + "\n", 1),
    (
        "postman-api-key",
        "postman.sh",
        "newman run --api-key PMAK-" + tok(HEX, 24, 70) + "-" + tok(HEX, 34, 71) + "\n",
        1,
    ),
    ("pulumi-token", "pulumi.sh", "pulumi login --token pul-" + tok(HEX, 40, 72) + "\n", 1),
    ("new-relic-api-key", "nr.js", "const key = 'NRAK-" + tok(UPPER_DIGITS, 27, 73) + "';\n", 1),
    ("heroku-api-key", "heroku.sh", "HEROKU_API_KEY=HRKU-AA" + tok(B62 + "_-", 58, 74) + "\n", 1),
    ("jwt", "request.http", "GET /orders\nAuthorization: Bearer " + _jwt() + "\n", 2),
    (
        "basic-auth-url",
        "compose.yml",
        "services:\n  api:\n    environment:\n      DATABASE_URL: postgres://shop:"
        + tok(B62, 16, 75)
        + "@db:5432/shop\n",
        4,
    ),
    (
        "generic-password",
        "settings.py",
        "DEBUG = False\nDATABASES = {'default': {'USER': 'shop', 'PASSWORD': 'Tr0ub4dor&3-"
        + tok(B62, 6, 76)
        + "'}}\n",
        2,
    ),
    ("generic-secret", "application.yml", "oauth:\n  client-secret: " + tok(B62, 32, 77) + "\n", 2),
    ("dotenv-secret", ".env", "APP_ENV=production\nSESSION_SIGNING=" + tok(B62 + "+/", 40, 78) + "\n", 2),
]


@pytest.mark.parametrize(
    ("rule", "name", "content", "line"), PLANTED, ids=[f"{p[0]}:{p[1]}" for p in PLANTED]
)
def test_planted_secret_found_by_its_rule_at_its_line(
    tmp_path: Path, registry: RuleRegistry, rule: str, name: str, content: str, line: int
) -> None:
    # Exactly one finding: the right rule at the right line, and no generic rule on top of it.
    assert scan_text(tmp_path, registry, name, content) == {(line, f"secrets.{rule}")}


def test_every_builtin_rule_has_a_planted_secret(registry: RuleRegistry) -> None:
    planted = {f"secrets.{p[0]}" for p in PLANTED} | {"secrets.key-store-file"}
    assert {r.meta.id for r in registry} == planted


def test_key_store_file_reported_by_name_though_binary(tmp_path: Path, registry: RuleRegistry) -> None:
    assert scan_text(tmp_path, registry, "client.p12", b"\x30\x82\x0a\x00\x00\x01" * 50) == {
        (None, "secrets.key-store-file")
    }


# --- things that must not be reported ---------------------------------------------------------------
NOT_SECRETS = [
    (
        "aws-docs-example.ini",
        "aws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
    ),
    ("placeholder-pat.sh", "export GH_TOKEN=ghp_" + "x" * 36 + "\n"),
    ("short-pat.sh", 'curl -H "Authorization: ghp_' + tok(B62, 35, 80) + '"\n'),
    ("sequential-pat.sh", "GITHUB_PAT=ghp_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ\n"),
    (
        "values.yaml",
        "db:\n  password: {{ .Values.db.password }}\n  token: ${API_TOKEN}\n  apiKey: <your-api-key>\n",
    ),
    (
        "app.py",
        "password = os.environ['DB_PASSWORD']\npassword = get_password()\ndef login(user, password, remember):\n    pass\n",
    ),
    (
        "schema.py",
        "class User:\n    password: str\n    password_hash: Mapped[str]\n    PASSWORD_MIN_LENGTH = 12\n",
    ),
    ("ansible.yml", "db_password: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n"),
    ("changeme.conf", "password = changeme\nadmin_password = password123\n"),
    (
        "k8s-refs.yaml",
        "env:\n- name: TOKEN\n  valueFrom:\n    secretKeyRef:\n      name: api-token-2024\n      key: token\nsecretName: tls-cert-v2\n",
    ),
    (
        "ids.tf",
        'api_key_id = "4f2a9c1e7b3d8a6f"\ntoken_url = "https://auth.shop.io/oauth2/v1/token"\nkms_key = "arn:aws:kms:eu-west-1:123:key/x"\n',
    ),
    ("uuid.yaml", "client_secret: 9b2f6a4e-7c1d-4e8a-b3f5-2d6c8e0a1f47\n"),
    (
        "names.yaml",
        "secret_key: release-2024-06-aurora\ntokenizer: bert-base-uncased-v2\npublic_key: MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIB\n",
    ),
    ("pem.md", "-----BEGIN RSA PRIVATE KEY-----\n...\n-----END RSA PRIVATE KEY-----\n"),
    ("public.pem", "-----BEGIN PUBLIC KEY-----\n" + tok(B62, 64, 81) + "\n-----END PUBLIC KEY-----\n"),
    ("not-jwt.txt", "eyJ" + tok(B62, 30, 82) + ".eyJ" + tok(B62, 30, 83) + "." + tok(B62, 20, 84) + "\n"),
    (
        "urls.md",
        "postgres://user:password@localhost/db\nhttps://bot:${TOKEN}@github.com/shop/api.git\nhttps://admin:s3cret@db.example.com\n",
    ),
    ("empty-auth.json", '{"auths": {"r.io": {"auth": "' + base64.b64encode(b"user:").decode() + '"}}}\n'),
    ("slack.md", "xoxb-xxxxxxxxx-xxxxxxxxxx-xxxxxxxxxxxx\n"),
    ("vault.go", "s.makeKubeConfigController = args\n"),
    (
        "package-lock.json",
        '{"integrity": "sha512-' + tok(B62, 86, 85) + '==", "secret": "' + tok(B62, 40, 86) + '"}\n',
    ),
    (".env.example", "SESSION_SIGNING=" + tok(B62, 40, 87) + "\n"),
    ("cve.yaml", "- key: CVE-2019-5436\n"),
]


@pytest.mark.parametrize(("name", "content"), NOT_SECRETS, ids=[n for n, _ in NOT_SECRETS])
def test_placeholder_or_non_secret_not_reported(
    tmp_path: Path, registry: RuleRegistry, name: str, content: str
) -> None:
    assert scan_text(tmp_path, registry, name, content) == set()


def test_generic_rule_defers_to_specific_rule_on_same_line(tmp_path: Path, registry: RuleRegistry) -> None:
    text = "api_token = ghp_" + tok(B62, 36, 88) + "\nother_token = " + tok(B62, 32, 89) + "\n"
    assert scan_text(tmp_path, registry, "tokens.txt", text) == {
        (1, "secrets.github-pat"),
        (2, "secrets.generic-secret"),
    }


# --- gitleaks' own expectations, applied to the built-in rules with a gitleaks equivalent ----------
# Where a built-in rule knowingly disagrees with gitleaks' validation samples, and why.
BUILTIN_DIFFERS = {
    ("anthropic-admin-api-key", "tp", 0): "the sample contains 'fake': our placeholder list drops it",
    (
        "gcp-service-account",
        "tp",
        0,
    ): 'a bare \'"type": "service_account"\' holds no credential; we need the private key',
    ("generic-api-key", "fp", 42): "a 32-hex apiKey: gitleaks stopwords this one known value, we report it",
    ("anthropic-api-key", "fp", 2): "an admin key: one built-in rule covers both Anthropic key kinds",
    ("mailchimp-api-key", "fp", 0): "a key in the right format for a Mailchimp call: we report it",
}
BUILTIN_DIFFERS.update(
    {
        ("gcp-api-key", "fp", i): "gitleaks allowlists known public Google keys by value; we report them"
        for i in range(5, 20)
    }
)


def test_builtin_rules_on_gitleaks_validation_samples(shared_data: Path, registry: RuleRegistry) -> None:
    cases = json.loads((shared_data / "gitleaks" / "RULE_TEST_CASES.json").read_text())
    tps_of = {c["rule_id"]: set(c["true_positives"]) for c in cases}
    by_gitleaks: dict[str, list] = {}
    for rule in registry:
        for gid in rule.meta.equivalents.get("gitleaks", ()):
            by_gitleaks.setdefault(gid, []).append(rule)
    checked = agree = 0
    unexpected: list[str] = []
    for case in cases:
        rules = by_gitleaks.get(case["rule_id"], [])
        siblings = {g for r in rules for g in r.meta.equivalents["gitleaks"]}
        for kind, samples in (("tp", case["true_positives"]), ("fp", case["false_positives"])):
            for i, sample in enumerate(samples):
                if not rules:
                    continue
                if kind == "fp" and any(sample in tps_of.get(g, ()) for g in siblings):
                    continue  # one of our rules covers two gitleaks rules: their FP is the sibling's TP
                res = TextFile("sample.txt", sample.encode())
                hit = any(list(r.check(res, Policy())) for r in rules)
                checked += 1
                ok = hit if kind == "tp" else not hit
                known = (case["rule_id"], kind, i) in BUILTIN_DIFFERS
                agree += ok
                if ok == known:
                    unexpected.append(f"{case['rule_id']} {kind}#{i}: {sample[:80]!r}")
    assert not unexpected
    assert checked >= 200
    assert agree / checked > 0.9


# --- reports never carry the secret -------------------------------------------------------------
def test_report_never_contains_full_secret(tmp_path: Path) -> None:
    secret = tok(B62, 40, 90)
    (tmp_path / "app.env").write_text(f"client_secret={secret}\nGH=ghp_{tok(B62, 36, 91)}\n")
    report = make_scanner().scan([str(tmp_path)])
    assert {f.rule_id for f in report.findings} == {"secrets.generic-secret", "secrets.github-pat"}
    registry = RuleRegistry(builtin_rules())
    for fmt in OutputFormat:
        text = fmt.to_formatter().render(report, FormatContext(registry=registry))
        assert secret not in text, fmt
        assert secret[:8] not in text, fmt
    assert any(f.message.endswith(f"{secret[:4]}… (40 characters)") for f in report.findings)


def test_redaction_shows_nothing_of_short_secrets() -> None:
    assert redact("hunter22") == "… (8 characters)"
    assert redact("-----BEGIN X") == "… (12 characters)"
    assert redact("\n" + "A" * 20) == "AAAA… (21 characters)"


def test_entropy_matches_gitleaks_definition() -> None:
    assert shannon_entropy("") == 0.0
    assert shannon_entropy("aaaa") == 0.0
    assert shannon_entropy("abcd") == pytest.approx(2.0)
    # gitleaks divides by the UTF-8 length: a 2-byte character counts once but weighs 2 bytes
    assert shannon_entropy("é") == pytest.approx(0.5)


# --- fingerprints -----------------------------------------------------------------------------------
def _fingerprints(tmp_path: Path, name: str, text: str) -> list[str]:
    path = tmp_path / name
    path.write_text(text)
    return [
        f.fingerprint for f in make_scanner().scan([str(path)]).findings if f.rule_id.startswith("secrets.")
    ]


def test_fingerprint_follows_the_secret_not_its_line(tmp_path: Path) -> None:
    key = "ghp_" + tok(B62, 36, 92)
    before = _fingerprints(tmp_path, "a.sh", f"GH={key}\n")
    moved = _fingerprints(tmp_path, "a.sh", f"# header\n\n\nexport X=1\nGH={key}\n")
    other_secret = _fingerprints(tmp_path, "a.sh", f"GH=ghp_{tok(B62, 36, 93)}\n")
    other_file = _fingerprints(tmp_path, "b.sh", f"GH={key}\n")
    assert len(before) == 1
    assert moved == before
    assert other_secret != before
    assert other_file != before


# --- hostile inputs ------------------------------------------------------------------------------------
def test_text_file_over_secret_scan_limit_is_an_error_naming_it(
    tmp_path: Path, registry: RuleRegistry
) -> None:
    big = tmp_path / "dump.sql"
    big.write_bytes(b"INSERT INTO t VALUES (1);\n" * 200)
    report = scan_tree(tmp_path, registry, Limits(max_secret_scan_bytes=1024))
    assert len(report.errors) == 1
    assert report.errors[0].source == str(big)
    assert "1024" in report.errors[0].message
    assert report.exit_code == 2


def test_huge_single_line_is_searched_and_generic_rules_skip_it(
    tmp_path: Path, registry: RuleRegistry
) -> None:
    # 2.7 MB of minified code on one line: a specific key is still found; the generic rules,
    # which would drown in assignments, do not read lines longer than MINIFIED_LINE.
    filler = ("var a=1,b='" + tok(B62, 20, 94) + "';api_key='" + tok(B62, 24, 95) + "';") * 40_000
    text = filler + "var k='AKIA" + tok("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16, 96) + "';\n"
    assert len(text) > 2_500_000
    assert scan_text(tmp_path, registry, "bundle.js", text) == {(1, "secrets.aws-access-key-id")}


def test_binary_file_is_not_searched(tmp_path: Path, registry: RuleRegistry) -> None:
    blob = (
        b"\x7fELF\x00\x00" + b"AKIA" + tok("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16, 97).encode() + b"\x00" * 64
    )
    assert scan_text(tmp_path, registry, "app.bin", blob) == set()


def test_invalid_utf8_is_scanned_with_replacement(tmp_path: Path, registry: RuleRegistry) -> None:
    key = "ghp_" + tok(B62, 36, 98)
    data = b"caf\xe9 \xff\xfe broken\n" * 3 + f"token: {key}\n".encode() + b"\xc3\x28 tail\n"
    assert scan_text(tmp_path, registry, "latin1.yaml", data) == {(4, "secrets.github-pat")}


def test_match_flood_is_a_per_file_error(tmp_path: Path, registry: RuleRegistry) -> None:
    flood = tmp_path / "flood.txt"
    flood.write_text(
        "".join(f"AKIA{tok('ABCDEFGHIJKLMNOPQRSTUVWXYZ234567', 16, 7)} " for _ in range(MAX_CANDIDATES + 1))
    )
    (tmp_path / "ok.sh").write_text("GH=ghp_" + tok(B62, 36, 99) + "\n")
    report = scan_tree(tmp_path, registry)
    assert [e.source for e in report.errors] == [str(flood)]
    assert "secrets.aws-access-key-id" in report.errors[0].message
    assert [f.rule_id for f in report.findings] == ["secrets.github-pat"]  # the other file is still scanned


def test_regex_hostile_input_is_linear(tmp_path: Path, registry: RuleRegistry) -> None:
    # Shapes that make backtracking engines explode on these patterns: long runs of key-like
    # characters, many unterminated PEM headers, assignments without values. RE2 reads each once.
    text = (
        "a" * 200_000
        + "\n"
        + "-----BEGIN RSA PRIVATE KEY-----\n" * 5_000
        + "password=" * 20_000
        + "\n"
        + "api_key: "
        + "A1" * 100_000
        + "\n"
    )
    path = tmp_path / "hostile.txt"
    path.write_text(text)
    report = scan_tree(path, registry)
    assert not report.errors
    assert {f.rule_id for f in report.findings} <= {"secrets.generic-password", "secrets.generic-secret"}


def test_kustomize_rendering_is_not_searched_twice() -> None:
    rendered = InputFile(name="overlay (kustomize)", data=b"token: x\n", origin="kustomize")
    member = InputFile(name="overlay/secret.yaml", data=b"token: x\n", origin="kustomize-member")
    assert not TextSource().wants(rendered)
    assert TextSource().wants(member)


def test_reprs_never_carry_file_content_or_secrets(tmp_path: Path, registry: RuleRegistry) -> None:
    key = "ghp_" + tok(B62, 36, 100)
    res = TextFile("ci.sh", f"GH={key}\n".encode())
    rule = next(r for r in registry if r.meta.id == "secrets.github-pat")
    (hit,) = rule.hits(res)  # type: ignore[attr-defined]
    assert key not in repr(res)
    assert key not in repr(hit)
