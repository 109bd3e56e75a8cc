#!/bin/sh
# Swagger UI and ReDoc for /docs and /redoc, from the npm registry: pinned, checked against
# npm's own sha512 integrity, only the files the pages load, and ReDoc's one CDN image (the
# "API docs by Redocly" logo) pointed at a local file. The outputs are committed under
# service/console/static/vendor/ so that pip, the image and CI never need npm; rerun
# (`make vendor`) only to change a version, then commit what changed.
set -eu
SWAGGER_UI=swagger-ui-dist@5.35.0
REDOC=redoc@2.5.4
# axe-core checks the console's accessibility in tests/browser/ (never served).
AXE=axe-core@4.14.1
out=${1:-service/console/static/vendor}
tests_out=${2:-tests/browser/vendor}
command -v npm >/dev/null || { echo "vendor: npm is needed (Debian: apt-get install npm)" >&2; exit 1; }
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
mkdir -p "$tests_out"
for spec in "$SWAGGER_UI" "$REDOC" "$AXE"; do
  want=$(npm view "$spec" dist.integrity)
  (cd "$work" && npm pack --silent "$spec" >/dev/null)
  tgz=$(ls "$work"/"${spec%@*}"-*.tgz)
  got="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)"
  [ "$got" = "$want" ] || { echo "vendor: integrity mismatch for $spec" >&2; exit 1; }
  tar xzf "$tgz" -C "$work" && mv "$work/package" "$work/${spec%@*}"
done
cp "$work/swagger-ui-dist/swagger-ui-bundle.js" "$work/swagger-ui-dist/swagger-ui.css" "$out/"
cp "$work/swagger-ui-dist/LICENSE" "$out/LICENSE.swagger-ui"
cp "$work/redoc/LICENSE" "$out/LICENSE.redoc"
sed 's|https://cdn.redoc.ly/redoc/logo-mini.svg|/ui/assets/vendor/redoc-logo-mini.svg|' \
  "$work/redoc/bundles/redoc.standalone.js" > "$out/redoc.standalone.js"
if grep -q 'https://cdn\.' "$out/redoc.standalone.js" "$out/swagger-ui-bundle.js"; then
  echo "vendor: a CDN address is left in a bundle" >&2; exit 1
fi
printf '<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"/>' > "$out/redoc-logo-mini.svg"
printf '%s\n%s\n' "$SWAGGER_UI" "$REDOC" > "$out/VERSIONS"
(cd "$out" && sha256sum -- *.js *.css *.svg > SHA256SUMS)
cp "$work/axe-core/axe.min.js" "$tests_out/"
cp "$work/axe-core/LICENSE" "$tests_out/LICENSE.axe-core"
echo "$AXE" > "$tests_out/VERSIONS"
(cd "$tests_out" && sha256sum -- axe.min.js > SHA256SUMS)
echo "vendor: $out $tests_out"
