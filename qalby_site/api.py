from ninja import NinjaAPI

api = NinjaAPI(title="Qalby Proxy", version="1.0.0", docs_url="/docs")
