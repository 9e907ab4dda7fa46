#!/usr/bin/env bash
# Make a TEST certificate authority and a broker certificate signed by it (openssl).
#
#   deploy/mosquitto/make-test-ca.sh DIR [HOST ...]      (default hosts: localhost 127.0.0.1)
#
# Writes DIR/ca.crt (give it to every chair and board: --mqtt-ca / board.ca_file), DIR/ca.key
# (keep it off the broker), DIR/server.crt and DIR/server.key (the broker's; 0600). The server
# certificate names every HOST (DNS name or IP address) the chairs use to reach the broker: Vigil
# checks it. For a real clinic use the clinic's own CA; this one is for tests and trials.
set -euo pipefail
dir=${1:?usage: make-test-ca.sh DIR [HOST ...]}
shift
hosts=("$@")
[ ${#hosts[@]} -eq 0 ] && hosts=(localhost 127.0.0.1)
mkdir -p "$dir"
umask 077
san=""
for h in "${hosts[@]}"; do
    if [[ $h =~ ^[0-9.]+$ || $h == *:* ]]; then san+="IP:$h,"; else san+="DNS:$h,"; fi
done
san=${san%,}
openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 825 -subj "/CN=Vigil test clinic CA" \
    -keyout "$dir/ca.key" -out "$dir/ca.crt" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=${hosts[0]}" \
    -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' \
    "$san" > "$dir/server.ext"
openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
    -days 825 -sha256 -extfile "$dir/server.ext" -out "$dir/server.crt" 2>/dev/null
rm -f "$dir/server.csr" "$dir/server.ext" "$dir/ca.srl"
chmod 644 "$dir/ca.crt" "$dir/server.crt"
echo "test CA and broker certificate for ${hosts[*]} in $dir"
