# The official image's RABBITMQ_DEFAULT_USER/PASS, as rabbitmq.conf settings.
set -eu
cat > /var/lib/rabbitmq/rabbitmq.conf <<CONF
default_user = ${RABBITMQ_DEFAULT_USER:-guest}
default_pass = ${RABBITMQ_DEFAULT_PASS:-guest}
loopback_users = none
CONF
export RABBITMQ_CONFIG_FILE=/var/lib/rabbitmq/rabbitmq.conf
exec rabbitmq-server
