"""One APIRouter per resource: the catalog, the organization's subscription, billing."""
