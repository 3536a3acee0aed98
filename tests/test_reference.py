"""Image reference parsing (distribution reference grammar + Docker Hub normalisation)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.errors import InputError
from shared.reference import ImageRef, ReferenceError, parse_reference

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("nginx", "docker.io", "library/nginx", "latest", None),
        ("nginx:1.27", "docker.io", "library/nginx", "1.27", None),
        ("docker.io/nginx", "docker.io", "library/nginx", "latest", None),
        ("index.docker.io/library/nginx:1", "docker.io", "library/nginx", "1", None),
        ("registry-1.docker.io/bitnami/redis:7", "docker.io", "bitnami/redis", "7", None),
        ("bitnami/redis", "docker.io", "bitnami/redis", "latest", None),
        ("contosoacr.azurecr.io/web:1.4.2", "contosoacr.azurecr.io", "web", "1.4.2", None),
        ("contosoacr.azurecr.io/team/web/api:v2", "contosoacr.azurecr.io", "team/web/api", "v2", None),
        ("localhost:5000/foo", "localhost:5000", "foo", "latest", None),
        ("localhost/foo", "localhost", "foo", "latest", None),
        ("myregistry:5000/a/b:c", "myregistry:5000", "a/b", "c", None),
        ("Contoso.AzureCR.io/web:1", "contoso.azurecr.io", "web", "1", None),
        ("[::1]:5000/web:1", "[::1]:5000", "web", "1", None),
        (f"nginx@{DIGEST}", "docker.io", "library/nginx", None, DIGEST),
        (f"ghcr.io/o/r:1.0@{DIGEST}", "ghcr.io", "o/r", "1.0", DIGEST),
        ("a__b/c---d.e_f:Tag_1.x-y", "docker.io", "a__b/c---d.e_f", "Tag_1.x-y", None),
    ],
)
def test_parse(text: str, registry: str, repository: str, tag: str | None, digest: str | None) -> None:
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest, ref.original) == (
        registry,
        repository,
        tag,
        digest,
        text,
    )
    assert ref.reference == (digest or tag)
    assert parse_reference(str(ref)) == ImageRef(ref.registry, ref.repository, ref.tag, ref.digest, str(ref))


def test_str_and_key() -> None:
    assert str(parse_reference("nginx")) == "docker.io/library/nginx:latest"
    ref = parse_reference(f"ghcr.io/o/r:1.0@{DIGEST}")
    assert str(ref) == f"ghcr.io/o/r:1.0@{DIGEST}"
    assert ref.key == ("ghcr.io", "o/r", DIGEST)
    assert parse_reference("nginx").api_host == "registry-1.docker.io"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("Nginx", "lower-case"),
        ("contosoacr.azurecr.io/Web:1", "lower-case"),
        ("nginx:", "tag"),
        ("nginx:-bad", "tag"),
        ("nginx:" + "a" * 129, "tag"),
        ("nginx@sha256:abc", "digest"),
        ("nginx@sha256:" + "A" * 64, "sha256"),
        ("web//api", "repository name"),
        ("web/", "repository name"),
        ("-web", "repository name"),
        ("a" * 64, "image ID"),
        ("nginx latest", "white space"),
        ("registry..io/web", "registry"),
        ("ünïcode/web", "non-ASCII"),
        ("web:1@", "digest"),
        ("/web", "repository name"),
    ],
)
def test_invalid(text: str, why: str) -> None:
    with pytest.raises(ReferenceError) as err:
        parse_reference(text)
    assert why in str(err.value)
    assert isinstance(err.value, InputError)


# --- properties ----------------------------------------------------------------------------------

alnum = st.text(alphabet="abcxyz0189", min_size=1, max_size=6)
separator = st.sampled_from([".", "_", "__", "-", "---"])
component = st.builds(
    lambda first, rest: first + "".join(s + a for s, a in rest),
    alnum,
    st.lists(st.tuples(separator, alnum), max_size=2),
)
domain = st.one_of(
    st.sampled_from(
        ["contosoacr.azurecr.io", "ghcr.io", "localhost", "localhost:5000", "quay.io", "r.example:443"]
    ),
    st.builds(
        lambda a, b, p: f"{a}.{b}" + (f":{p}" if p else ""),
        st.text(alphabet="abc019", min_size=1, max_size=8),
        st.text(alphabet="abcio", min_size=2, max_size=4),
        st.one_of(st.none(), st.integers(1, 65535)),
    ),
)
tag = st.builds(
    lambda a, b: a + b,
    st.text(alphabet="aZ09_", min_size=1, max_size=1),
    st.text(alphabet="aZ09_.-", max_size=20),
)
digest = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64).map(lambda h: f"sha256:{h}")


@st.composite
def references(draw: st.DrawFn) -> str:
    parts = draw(st.lists(component, min_size=1, max_size=3))
    path = "/".join(parts)
    text = path
    if draw(st.booleans()):
        text = f"{draw(domain)}/{path}"
    elif len(parts) > 1 and ("." in parts[0] or parts[0] == "localhost"):
        text = f"docker.io/{path}"  # a first component with a dot would be read as a registry
    if draw(st.booleans()):
        text += f":{draw(tag)}"
    if draw(st.booleans()):
        text += f"@{draw(digest)}"
    return text


@settings(max_examples=300, deadline=None)
@given(references())
def test_round_trip_of_normalised_names(text: str) -> None:
    ref = parse_reference(text)
    again = parse_reference(str(ref))
    assert (again.registry, again.repository, again.tag, again.digest) == (
        ref.registry,
        ref.repository,
        ref.tag,
        ref.digest,
    )
    assert str(again) == str(ref)
    assert (ref.registry == ref.registry.lower() and ref.tag) or ref.digest


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=80))
def test_never_raises_anything_but_reference_error(text: str) -> None:
    try:
        ref = parse_reference(text)
    except ReferenceError as exc:
        assert str(exc).startswith("invalid image reference")
        return
    assert str(parse_reference(str(ref))) == str(ref)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="abcAZ09./:@_-[]", max_size=60))
def test_never_raises_on_grammar_characters(text: str) -> None:
    with contextlib.suppress(ReferenceError):
        parse_reference(text)
