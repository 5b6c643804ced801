#!/usr/bin/env python3
"""Verify a Portcullis access token with another JWT library (PyJWT).

Usage: verify_jwt.py JWKS_URL TOKEN ISSUER AUDIENCE

Fetches the JWKS, picks the key named by the token's `kid`, and verifies an
RS256 signature, `iss`, `aud`, `exp`/`nbf` (60 s leeway) and the RFC 9068
header type `at+jwt`. Prints the claims as JSON on success.

Exit status: 0 valid, 1 token rejected, 2 usage or JWKS error.
Needs: pip install pyjwt cryptography
"""

import json
import sys


def main(argv):
    if len(argv) != 5:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    jwks_url, token, issuer, audience = argv[1:]

    try:
        import jwt
        from jwt import PyJWKClient
    except ImportError:
        print("PyJWT is not installed: pip install pyjwt cryptography", file=sys.stderr)
        return 2

    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as e:
        print(f"rejected: malformed token: {e}", file=sys.stderr)
        return 1
    if header.get("alg") != "RS256":
        print(f"rejected: alg {header.get('alg')!r} is not RS256", file=sys.stderr)
        return 1
    if header.get("typ") != "at+jwt":
        print(f"rejected: typ {header.get('typ')!r} is not at+jwt", file=sys.stderr)
        return 1

    try:
        signing_key = PyJWKClient(jwks_url, cache_keys=False).get_signing_key_from_jwt(token)
    except jwt.exceptions.PyJWKClientConnectionError as e:
        print(f"cannot fetch the JWKS from {jwks_url}: {e}", file=sys.stderr)
        return 2
    except jwt.PyJWTError as e:
        print(f"rejected: no matching key in the JWKS: {e}", file=sys.stderr)
        return 1

    try:
        claims = jwt.decode(
            token,
            signing_key.key,
            algorithms=["RS256"],
            issuer=issuer,
            audience=audience,
            leeway=60,
            options={"require": ["exp", "iat", "iss", "aud", "sub"]},
        )
    except jwt.PyJWTError as e:
        print(f"rejected: {type(e).__name__}: {e}", file=sys.stderr)
        return 1

    print(json.dumps(claims, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
