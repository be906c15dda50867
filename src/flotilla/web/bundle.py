"""The native-client config bundle: a zip with the files the COE driver renders
(``client_config``: docker COEs ``ca.pem``, ``cert.pem``, ``key.pem``; Kubernetes a
kubeconfig ``config``) and ``env`` (the export lines), like ``magnum cluster-config``
writes into a directory.

The key and CSR are made here, in the dashboard process, and the CSR is signed by the
cluster's CA through ``services.certificates.sign`` (same policy as the API); the
private key goes to the browser and is not kept.
"""

from __future__ import annotations

import io
import re
import zipfile

from fastapi import Request, Response

from flotilla.api.deps import runtime
from flotilla.certs import authority
from flotilla.drivers.coe import native
from flotilla.drivers.coe.native import ClientConfigRequest, Credentials, NativeConfig
from flotilla.drivers.registry import CoeRegistry
from flotilla.errors import Forbidden, Invalid
from flotilla.services import certificates, clusters
from flotilla.web.render import page
from flotilla.web.routing import new_router
from flotilla.web.session import FormDep, ViewerDep

router = new_router()


def _pem(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"


def _render(coes: CoeRegistry, coe: str, request: ClientConfigRequest) -> NativeConfig:
    """The COE driver's client configuration for a bundle unpacked in the current directory."""
    driver = coes.get(coe)
    return driver.client_config(request) if driver is not None else NativeConfig()


@router.get("/clusters/{ident}/config")
def config_page(request: Request, me: ViewerDep, ident: str) -> Response:
    rt = runtime(request)
    with rt.db.reader() as s:
        c = clusters.get(s, me.ctx, ident, "cluster")
        template = clusters.template_of(s, c)
    tls = not template.tls_disabled
    env: list[str] = []
    try_it = ""
    if c.api_address:
        preview = _render(
            rt.coes, template.coe, ClientConfigRequest(c.name or c.uuid, c.api_address, ".", tls)
        )
        env = NativeConfig(env=tuple((k, v) for k, v in preview.env if v is not None)).shell()
        try_it = preview.try_it
    return page(
        request, "cluster_config.html", title=f"Client config for {c.name}", active="clusters", c=c,
        tls=tls, ready=bool(c.api_address), env=env, coe=template.coe, try_it=try_it,
    )  # fmt: skip


@router.get("/clusters/{ident}/ca.pem")
def ca_download(request: Request, me: ViewerDep, ident: str) -> Response:
    with runtime(request).db.reader() as s:
        c = clusters.get(s, me.ctx, ident, "cluster")
        pem = certificates.ca_pem(s, me.ctx, c)
    return Response(
        _pem(pem), media_type="application/x-pem-file",
        headers={"Content-Disposition": 'attachment; filename="ca.pem"', "Cache-Control": "no-store"},
    )  # fmt: skip


@router.post("/clusters/{ident}/config.zip")
def config_zip(request: Request, me: ViewerDep, form: FormDep, ident: str) -> Response:
    rt = runtime(request)
    if not me.can_write:  # before any other message; certificates.sign enforces it too
        raise Forbidden("Policy doesn't allow certificate:create to be performed.")
    with rt.db.reader() as s:
        c = clusters.get(s, me.ctx, ident, "cluster")
        template = clusters.template_of(s, c)
        if template.tls_disabled:
            raise Invalid(
                f"TLS is disabled for cluster {c.name}: there are no certificates to download; "
                f"point DOCKER_HOST at {c.api_address or 'its API address'}."
            )
        if not c.api_address:
            raise Invalid(f"Cluster {c.name} has no API address yet; wait until its creation completes.")
        csr, key = authority.generate_csr()
        ca = certificates.ca_pem(s, me.ctx, c)
        cert = certificates.sign(s, me.ctx, rt.box, c, csr)
        name, address = c.name or c.uuid, c.api_address
    creds = Credentials(ca, cert, key)
    config = _render(rt.coes, template.coe, ClientConfigRequest(name, address, ".", True, creds))
    files = list(config.files) or list(native.pem_files(creds))  # a COE without a renderer: the certificates
    env = "\n".join([f"# Flotilla cluster {name}: run `. ./env` in this directory.", *config.shell()])
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for filename, text, mode in [(f.name, f.text, f.mode) for f in files] + [("env", env + "\n", 0o644)]:
            info = zipfile.ZipInfo(filename, date_time=(2024, 1, 1, 0, 0, 0))
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, text)
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    return Response(
        buf.getvalue(), media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{safe}-config.zip"', "Cache-Control": "no-store"},
    )  # fmt: skip
