set -eu
vars=$(env | cut -d= -f1 | grep -E "${NGINX_ENVSUBST_FILTER:-.}" | sed 's/^/$/' | tr '\n' ' ')
for template in /etc/nginx/templates/*.template; do
  envsubst "$vars" < "$template" > "/etc/nginx/conf.d/$(basename "$template" .template)"
done
exec nginx -g 'daemon off;'
