"""The operator console under /admin: sign-in, environment switcher, catalog and customer screens.

- routes.py      `admin_router`: session + CSRF middleware, sign-in gate, HTML error pages
- security.py    cookie/CSRF settings derived from `settings.secret`, CSP and other headers
- auth.py        operators (argon2id), `create_operator`, `ensure_bootstrap_operator`, rate-limited sign-in
- context.py     who is signed in and which environment is shown (`?env=<slug>`, else the session's)
- rendering.py   full page, `#main` fragment or named block for htmx; `Vary: HX-Request`
- forms.py, catalog_forms.py   HTML forms <-> the API's input Structs (errors land on their field)
- queries.py     read-only list queries with search (writes always go through the domain services)
- views/         controllers: parse, call the service, render
"""
