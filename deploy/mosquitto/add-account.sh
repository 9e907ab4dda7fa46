#!/usr/bin/env bash
# Add a broker account for a chair or a board, with a random password and its ACL block.
#
#   deploy/mosquitto/add-account.sh DIR CLINIC chair NAME     a chair: publishes vigil/CLINIC/NAME/#
#   deploy/mosquitto/add-account.sh DIR CLINIC board NAME     a board: reads vigil/CLINIC/#
#
# Writes the password to DIR/passwords/NAME (0600: copy it to that computer and point Vigil at it
# with --mqtt-password-file or board.password_file; it is never printed), adds the account to
# DIR/passwd (mosquitto_passwd, hashed) and appends its block to DIR/acl. Reload the broker after.
set -euo pipefail
dir=${1:?usage: add-account.sh DIR CLINIC chair|board NAME}
clinic=${2:?clinic name}
kind=${3:?chair or board}
name=${4:?account name}
name_re='^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'
[[ $clinic =~ $name_re && $name =~ $name_re ]] || { echo "clinic and account names: letters, digits, _ . - (1-64)" >&2; exit 2; }
umask 077
mkdir -p "$dir/passwords"
password=$(openssl rand -base64 24 | tr -d '/+=' | cut -c1-24)
printf '%s\n' "$password" > "$dir/passwords/$name"
if [ -f "$dir/passwd" ]; then
    mosquitto_passwd -b "$dir/passwd" "$name" "$password"
else
    mosquitto_passwd -c -b "$dir/passwd" "$name" "$password"
fi
case $kind in
    chair) printf '\nuser %s\ntopic write vigil/%s/%s/#\ntopic read vigil-cmd/%s/%s/ack\n' \
               "$name" "$clinic" "$name" "$clinic" "$name" >> "$dir/acl" ;;
    board) printf '\nuser %s\ntopic read vigil/%s/#\ntopic write vigil-cmd/%s/+/ack\n' \
               "$name" "$clinic" "$clinic" >> "$dir/acl" ;;
    *) echo "kind must be chair or board" >&2; exit 2 ;;
esac
echo "account $name ($kind of clinic $clinic) added; its password is in $dir/passwords/$name"
