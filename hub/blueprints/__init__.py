"""One blueprint per area of the hub."""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """Register every blueprint on ``app``."""
    from hub.blueprints import (  # noqa: PLC0415
        admin,
        api,
        auth,
        cases,
        charter,
        consent,
        dpo,
        fiches,
        liaison,
        main,
        witness,
    )

    app.register_blueprint(main.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(liaison.bp, name_prefix=api.bp.name)  # endpoints api.liaison.*
    app.register_blueprint(liaison.web_bp)  # the same for people in the browser: echange.*
    app.register_blueprint(fiches.bp)
    # As if nested in the API (endpoints api.witness.*): its bearer check and exemptions apply.
    app.register_blueprint(witness.bp, name_prefix=api.bp.name)
    app.register_blueprint(witness.directory_bp, name_prefix=api.bp.name)
    app.register_blueprint(charter.bp)
    app.register_blueprint(cases.bp)
    app.register_blueprint(consent.bp)
    app.register_blueprint(dpo.bp)
