"""Catalog rules: features, products, plans, add-ons, versioned prices, coupons.

Prices are versioned: once a plan or add-on is published, changing its charges creates the
next price version. Subscriptions keep the version they bought until they are migrated.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased, joinedload, selectinload

from app.catalog import schemas as s
from app.catalog.models import (
    Addon,
    BillingModel,
    CatalogStatus,
    Charge,
    Coupon,
    DiscountDuration,
    Entitlement,
    Feature,
    FeatureType,
    MeterType,
    Plan,
    PlanStatus,
    PriceVersion,
    PricingType,
    Product,
    ResetPeriod,
    TiersMode,
)
from app.core.errors import Conflict, InvalidRequest, Unprocessable, not_found
from app.core.money import check_amount, normalize_currency
from app.core.outbox import record_change
from app.core.pagination import Page, paginate
from app.core.schemas import unset_fields
from app.environments.service import EnvironmentRef
from app.subscriptions.entitlements import invalidate_entitlements_for_addon, invalidate_entitlements_for_plan

# ---- shared helpers -------------------------------------------------------------------------


async def _get(
    session: AsyncSession, model: Any, env: EnvironmentRef, ref: str, entity: str, *options: Any
) -> Any:
    row = await session.scalar(
        select(model).where(model.environment_pk == env.pk, model.ref == ref).options(*options)
    )
    if row is None:
        raise not_found(entity, ref)
    return row


async def _ensure_new(session: AsyncSession, model: Any, env: EnvironmentRef, ref: str, entity: str) -> None:
    exists = await session.scalar(select(model.pk).where(model.environment_pk == env.pk, model.ref == ref))
    if exists is not None:
        raise Conflict(f"A {entity} with id '{ref}' exists already.", code=f"{entity}_exists", param="id")


async def _features_by_ref(
    session: AsyncSession, env: EnvironmentRef, refs: Iterable[str], param: str
) -> dict[str, Feature]:
    wanted = set(refs)
    if not wanted:
        return {}
    rows = await session.scalars(
        select(Feature).where(Feature.environment_pk == env.pk, Feature.ref.in_(wanted))
    )
    found = {f.ref: f for f in rows}
    for ref in sorted(wanted - found.keys()):
        error = not_found("feature", ref)
        error.param = param
        raise error
    return found


def _status_filter(query: Select[Any], model: Any, status: str | None, enum: Any) -> Select[Any]:
    if status is None:
        return query
    try:
        value = enum(status)
    except ValueError:
        raise InvalidRequest(f"Unknown status '{status}'.", code="invalid_status", param="status") from None
    return query.where(model.status == value)


def _meta(metadata: dict[str, str]) -> dict[str, str]:
    for key, value in metadata.items():
        if len(key) > 40 or len(value) > 500:
            raise InvalidRequest(
                "Metadata keys are at most 40 characters, values 500.", code="invalid_metadata"
            )
    return dict(metadata)


async def _list_simple(
    session: AsyncSession, env: EnvironmentRef, q: s.ListQuery, model: Any, entity: str, render: Any
) -> Page[Any]:
    """A status-filtered, cursor-paginated list of one of the flat catalog entities."""
    query = _status_filter(
        select(model).where(model.environment_pk == env.pk), model, q.status, CatalogStatus
    )
    rows, more = await paginate(
        session,
        query,
        model,
        environment_pk=env.pk,
        limit=q.limit,
        starting_after=q.starting_after,
        entity=entity,
    )
    return Page(data=[render(r) for r in rows], has_more=more, next_cursor=rows[-1].ref if more else None)


def _assign(target: Any, fields: dict[str, Any]) -> None:
    """Apply a PATCH body's fields; `metadata` lives in the `metadata_` column."""
    for field, value in fields.items():
        if field == "metadata":
            target.metadata_ = _meta(value)
        else:
            setattr(target, field, value)


# ---- features -------------------------------------------------------------------------------


def feature_out(f: Feature) -> s.FeatureOut:
    return s.FeatureOut(
        id=f.ref,
        name=f.name,
        description=f.description,
        feature_type=f.feature_type,
        meter_type=f.meter_type,
        unit_singular=f.unit_singular,
        unit_plural=f.unit_plural,
        status=f.status,
        metadata=f.metadata_,
        created_at=f.created_at,
        updated_at=f.updated_at,
    )


async def create_feature(session: AsyncSession, env: EnvironmentRef, data: s.FeatureCreate) -> s.FeatureOut:
    await _ensure_new(session, Feature, env, data.id, "feature")
    if data.feature_type is FeatureType.METERED and data.meter_type is None:
        raise InvalidRequest(
            "A metered feature needs a meterType.", code="meter_type_required", param="meterType"
        )
    if data.feature_type is not FeatureType.METERED and data.meter_type is not None:
        raise InvalidRequest(
            "Only metered features have a meterType.", code="invalid_meter_type", param="meterType"
        )
    feature = Feature(
        environment_pk=env.pk,
        ref=data.id,
        name=data.name,
        description=data.description,
        feature_type=data.feature_type,
        meter_type=data.meter_type,
        unit_singular=data.unit_singular,
        unit_plural=data.unit_plural or data.unit_singular,
        metadata_=_meta(data.metadata),
    )
    session.add(feature)
    await session.flush()
    return feature_out(feature)


async def get_feature(session: AsyncSession, env: EnvironmentRef, ref: str) -> s.FeatureOut:
    return feature_out(await _get(session, Feature, env, ref, "feature"))


async def list_features(session: AsyncSession, env: EnvironmentRef, q: s.ListQuery) -> Page[s.FeatureOut]:
    return await _list_simple(session, env, q, Feature, "feature", feature_out)


async def update_feature(
    session: AsyncSession, env: EnvironmentRef, ref: str, data: s.FeatureUpdate
) -> s.FeatureOut:
    feature: Feature = await _get(session, Feature, env, ref, "feature")
    _assign(feature, unset_fields(data))
    await session.flush()
    return feature_out(feature)


async def archive_feature(session: AsyncSession, env: EnvironmentRef, ref: str) -> s.FeatureOut:
    feature: Feature = await _get(session, Feature, env, ref, "feature")
    in_use = await session.scalar(
        select(func.count())
        .select_from(Entitlement)
        .outerjoin(Plan, Plan.pk == Entitlement.plan_pk)
        .outerjoin(Addon, Addon.pk == Entitlement.addon_pk)
        .where(
            Entitlement.feature_pk == feature.pk,
            func.coalesce(Plan.status, Addon.status) != PlanStatus.ARCHIVED,
        )
    )
    if in_use:
        raise Conflict(
            f"Feature '{ref}' is granted by {in_use} plan(s) or add-on(s) that are not archived; remove it there first.",
            code="feature_in_use",
        )
    feature.status = CatalogStatus.ARCHIVED
    await session.flush()
    return feature_out(feature)


# ---- products -------------------------------------------------------------------------------


def product_out(p: Product) -> s.ProductOut:
    return s.ProductOut(
        id=p.ref,
        name=p.name,
        description=p.description,
        status=p.status,
        metadata=p.metadata_,
        created_at=p.created_at,
        updated_at=p.updated_at,
    )


async def create_product(session: AsyncSession, env: EnvironmentRef, data: s.ProductCreate) -> s.ProductOut:
    await _ensure_new(session, Product, env, data.id, "product")
    product = Product(
        environment_pk=env.pk,
        ref=data.id,
        name=data.name,
        description=data.description,
        metadata_=_meta(data.metadata),
    )
    session.add(product)
    await session.flush()
    return product_out(product)


async def get_product(session: AsyncSession, env: EnvironmentRef, ref: str) -> s.ProductOut:
    return product_out(await _get(session, Product, env, ref, "product"))


async def list_products(session: AsyncSession, env: EnvironmentRef, q: s.ListQuery) -> Page[s.ProductOut]:
    return await _list_simple(session, env, q, Product, "product", product_out)


async def update_product(
    session: AsyncSession, env: EnvironmentRef, ref: str, data: s.ProductUpdate
) -> s.ProductOut:
    product: Product = await _get(session, Product, env, ref, "product")
    _assign(product, unset_fields(data))
    await session.flush()
    record_change(session, env.pk, "product", product.pk, "updated")
    return product_out(product)


async def archive_product(session: AsyncSession, env: EnvironmentRef, ref: str) -> s.ProductOut:
    product: Product = await _get(session, Product, env, ref, "product")
    live = await session.scalar(
        select(func.count()).where(Plan.product_pk == product.pk, Plan.status == PlanStatus.PUBLISHED)
    )
    if live:
        raise Conflict(
            f"Product '{ref}' still has {live} published plan(s); archive them first.", code="product_in_use"
        )
    product.status = CatalogStatus.ARCHIVED
    await session.flush()
    return product_out(product)


# ---- entitlements and charges ----------------------------------------------------------------


async def _build_entitlements(
    session: AsyncSession, env: EnvironmentRef, items: Sequence[s.EntitlementIn]
) -> list[Entitlement]:
    features = await _features_by_ref(session, env, (e.feature_id for e in items), "entitlements")
    seen: set[str] = set()
    result: list[Entitlement] = []
    for index, item in enumerate(items):
        param = f"entitlements[{index}]"
        if item.feature_id in seen:
            raise InvalidRequest(
                f"Feature '{item.feature_id}' is listed twice.", code="duplicate_entitlement", param=param
            )
        seen.add(item.feature_id)
        feature = features[item.feature_id]
        if feature.status is CatalogStatus.ARCHIVED:
            raise Unprocessable(f"Feature '{feature.ref}' is archived.", code="feature_archived", param=param)
        reset = item.reset_period
        if feature.feature_type is FeatureType.BOOLEAN:
            if item.usage_limit is not None or item.unlimited or reset is not None:
                raise InvalidRequest(
                    "A boolean feature takes no limit or reset period.",
                    code="invalid_entitlement",
                    param=param,
                )
        else:
            if (item.usage_limit is None) == (not item.unlimited):
                raise InvalidRequest(
                    "Give a usageLimit or set unlimited (not both).", code="invalid_entitlement", param=param
                )
            incremental = (
                feature.feature_type is FeatureType.METERED and feature.meter_type is MeterType.INCREMENTAL
            )
            if reset is not None and not incremental:
                raise InvalidRequest(
                    "Only incremental metered features reset.", code="invalid_reset_period", param=param
                )
            if incremental and reset is None:
                reset = ResetPeriod.MONTH
        result.append(
            Entitlement(
                feature_pk=feature.pk,
                feature=feature,
                usage_limit=item.usage_limit,
                unlimited=item.unlimited,
                soft_limit=item.has_soft_limit,
                reset_period=reset,
                display_order=index,
            )
        )
    return result


def entitlement_out(e: Entitlement) -> s.EntitlementOut:
    f = e.feature
    return s.EntitlementOut(
        feature_id=f.ref,
        feature_name=f.name,
        feature_type=f.feature_type,
        meter_type=f.meter_type,
        unit_singular=f.unit_singular,
        unit_plural=f.unit_plural,
        usage_limit=e.usage_limit,
        unlimited=e.unlimited,
        has_soft_limit=e.soft_limit,
        reset_period=e.reset_period,
    )


async def _build_charges(
    session: AsyncSession, env: EnvironmentRef, pricing_type: PricingType, items: Sequence[s.ChargeIn]
) -> list[Charge]:
    if pricing_type is not PricingType.PAID and items:
        raise InvalidRequest(
            f"A {pricing_type.value.lower()} plan has no charges.",
            code="charges_not_allowed",
            param="charges",
        )
    features = await _features_by_ref(session, env, (c.feature_id for c in items if c.feature_id), "charges")
    currency_by_period: dict[str, str] = {}
    seen: set[tuple[str, str, str | None]] = set()
    result: list[Charge] = []
    for index, item in enumerate(items):
        param = f"charges[{index}]"
        currency = normalize_currency(item.currency, param=f"{param}.currency")
        period = item.billing_period.value
        if currency_by_period.setdefault(period, currency) != currency:
            raise InvalidRequest(
                "All charges of one billing period share one currency.", code="currency_mismatch", param=param
            )
        key = (period, item.billing_model.value, item.feature_id)
        if key in seen or (
            item.billing_model is BillingModel.FLAT_FEE and (period, "FLAT_FEE", None) in seen
        ):
            raise InvalidRequest("This charge is listed twice.", code="duplicate_charge", param=param)
        seen.add(key)
        feature = features.get(item.feature_id) if item.feature_id else None
        _check_charge(item, feature, param)
        result.append(
            Charge(
                billing_period=item.billing_period,
                currency=currency,
                billing_model=item.billing_model,
                amount=check_amount(item.amount, param=f"{param}.amount")
                if item.amount is not None
                else None,
                feature_pk=feature.pk if feature else None,
                feature=feature,
                tiers_mode=item.tiers_mode,
                tiers=[
                    {"upTo": t.up_to, "unitAmount": t.unit_amount, "flatAmount": t.flat_amount}
                    for t in item.tiers
                ]
                if item.tiers
                else None,
                min_quantity=item.min_quantity,
                max_quantity=item.max_quantity,
            )
        )
    return result


def _check_charge(item: s.ChargeIn, feature: Feature | None, param: str) -> None:
    model = item.billing_model

    def bad(message: str) -> InvalidRequest:
        return InvalidRequest(message, code="invalid_charge", param=param)

    if model is BillingModel.FLAT_FEE:
        if item.amount is None or feature is not None or item.tiers:
            raise bad("A flat fee has an amount and no feature or tiers.")
        return
    if feature is None:
        raise bad(f"A {model.value} charge names the featureId it is priced by.")
    if feature.feature_type is FeatureType.BOOLEAN:
        raise bad("A boolean feature cannot be priced per unit.")
    if model is BillingModel.USAGE_BASED:
        if feature.feature_type is not FeatureType.METERED or item.amount is None:
            raise bad("A usage-based charge needs a metered feature and a unit amount.")
        return
    if model is BillingModel.PER_UNIT and (item.amount is None or item.tiers):
        raise bad("A per-unit charge has a unit amount and no tiers.")
    if model is BillingModel.TIERED:
        if not item.tiers or item.tiers_mode is None or item.amount is not None:
            raise bad("A tiered charge has tiersMode and tiers, and no amount.")
        ups = [t.up_to for t in item.tiers]
        if ups[-1] is not None or any(u is None for u in ups[:-1]):
            raise bad("Only the last tier is open-ended (upTo null).")
        bounded = [u for u in ups if u is not None]
        if bounded != sorted(set(bounded)):
            raise bad("Tier bounds must increase.")
    if (
        item.min_quantity is not None
        and item.max_quantity is not None
        and item.min_quantity > item.max_quantity
    ):
        raise bad("minQuantity is above maxQuantity.")
    if item.tiers_mode is not None and model is not BillingModel.TIERED:
        raise bad("tiersMode is only for tiered charges.")
    _ = TiersMode  # tiers_mode values are validated by the Struct


def charge_out(c: Charge) -> s.ChargeOut:
    return s.ChargeOut(
        billing_period=c.billing_period,
        currency=c.currency,
        billing_model=c.billing_model,
        amount=c.amount,
        feature_id=c.feature.ref if c.feature else None,
        tiers_mode=c.tiers_mode,
        tiers=[
            s.TierOut(up_to=t["upTo"], unit_amount=t["unitAmount"], flat_amount=t["flatAmount"])
            for t in c.tiers
        ]
        if c.tiers
        else None,
        min_quantity=c.min_quantity,
        max_quantity=c.max_quantity,
    )


def _charge_signature(charges: Iterable[Charge]) -> list[tuple[Any, ...]]:
    return sorted(
        (
            c.billing_period.value,
            c.currency,
            c.billing_model.value,
            c.amount,
            c.feature_pk,
            c.tiers_mode.value if c.tiers_mode else None,
            repr(c.tiers),
            c.min_quantity,
            c.max_quantity,
        )
        for c in charges
    )


def _latest_versions_query(owner_column: Any, owner_pks: Sequence[int]) -> Select[Any]:
    newer = aliased(PriceVersion)
    latest = (
        select(func.max(newer.version))
        .where(getattr(newer, owner_column.key) == owner_column)
        .correlate(PriceVersion)
        .scalar_subquery()
    )
    return (
        select(PriceVersion)
        .where(owner_column.in_(owner_pks), PriceVersion.version == latest)
        .options(selectinload(PriceVersion.charges).joinedload(Charge.feature))
    )


async def _latest_versions(
    session: AsyncSession, owner_column: Any, owner_pks: Sequence[int]
) -> dict[int, PriceVersion]:
    if not owner_pks:
        return {}
    rows: Iterable[PriceVersion] = await session.scalars(_latest_versions_query(owner_column, owner_pks))
    return {getattr(v, owner_column.key): v for v in rows}


async def _set_charges(
    session: AsyncSession,
    env: EnvironmentRef,
    owner: Plan | Addon,
    charges: list[Charge],
    latest: PriceVersion | None,
) -> PriceVersion | None:
    """Store charges as the owner's price: in place while a draft, as a new version once published."""
    is_plan = isinstance(owner, Plan)
    if latest is not None and _charge_signature(latest.charges) == _charge_signature(charges):
        return latest
    if latest is not None and owner.status is PlanStatus.DRAFT:
        latest.charges.clear()
        await session.flush()
        latest.charges.extend(charges)
        return latest
    version = PriceVersion(
        environment_pk=env.pk,
        plan_pk=owner.pk if is_plan else None,
        addon_pk=None if is_plan else owner.pk,
        version=(latest.version + 1) if latest else 1,
        charges=charges,
    )
    session.add(version)
    await session.flush()
    if latest is not None:
        record_change(session, env.pk, "plan" if is_plan else "addon", owner.pk, "price_changed")
    return version


# ---- plans ----------------------------------------------------------------------------------

_PLAN_OPTIONS = (
    joinedload(Plan.product),
    joinedload(Plan.parent_plan),
    selectinload(Plan.entitlements).joinedload(Entitlement.feature),
    selectinload(Plan.addons),
)


def plan_out(plan: Plan, version: PriceVersion | None) -> s.PlanOut:
    return s.PlanOut(
        id=plan.ref,
        product_id=plan.product.ref,
        name=plan.name,
        description=plan.description,
        pricing_type=plan.pricing_type,
        status=plan.status,
        display_order=plan.display_order,
        recommended=plan.recommended,
        parent_plan_id=plan.parent_plan.ref if plan.parent_plan else None,
        default_trial=s.DefaultTrialOut(
            duration_days=plan.trial_days, trial_end_behavior=plan.trial_end_behavior
        )
        if plan.trial_days
        else None,
        entitlements=[entitlement_out(e) for e in sorted(plan.entitlements, key=lambda e: e.display_order)],
        price_version=version.version if version else None,
        charges=[charge_out(c) for c in version.charges] if version else [],
        compatible_addon_ids=sorted(a.ref for a in plan.addons),
        metadata=plan.metadata_,
        created_at=plan.created_at,
        updated_at=plan.updated_at,
    )


async def _load_plan(session: AsyncSession, env: EnvironmentRef, ref: str) -> Plan:
    return await _get(session, Plan, env, ref, "plan", *_PLAN_OPTIONS)


async def _render_plan(session: AsyncSession, plan: Plan) -> s.PlanOut:
    versions = await _latest_versions(session, PriceVersion.plan_pk, [plan.pk])
    return plan_out(plan, versions.get(plan.pk))


async def _resolve_parent(
    session: AsyncSession, env: EnvironmentRef, plan: Plan, parent_ref: str | None
) -> Plan | None:
    if parent_ref is None:
        return None
    parent: Plan = await _get(session, Plan, env, parent_ref, "plan")
    if parent.product_pk != plan.product_pk:
        raise InvalidRequest(
            "A parent plan belongs to the same product.", code="invalid_parent_plan", param="parentPlanId"
        )
    # Walk up from the parent: meeting the plan itself would make a loop.
    seen: set[int] = set()
    cursor: Plan | None = parent
    while cursor is not None:
        if cursor.pk == plan.pk or cursor.pk in seen:
            raise InvalidRequest(
                "Parent plans cannot form a loop.", code="invalid_parent_plan", param="parentPlanId"
            )
        seen.add(cursor.pk)
        parent_pk = cursor.parent_plan_pk
        cursor = await session.get(Plan, parent_pk) if parent_pk else None
    return parent


async def _addons_by_ref(
    session: AsyncSession, env: EnvironmentRef, plan: Plan, refs: Sequence[str]
) -> list[Addon]:
    if len(set(refs)) != len(refs):
        raise InvalidRequest("An add-on is listed twice.", code="duplicate_addon", param="compatibleAddonIds")
    rows = list(
        await session.scalars(select(Addon).where(Addon.environment_pk == env.pk, Addon.ref.in_(refs)))
    )
    missing = set(refs) - {a.ref for a in rows}
    if missing:
        error = not_found("addon", sorted(missing)[0])
        error.param = "compatibleAddonIds"
        raise error
    for addon in rows:
        if addon.product_pk != plan.product_pk:
            raise InvalidRequest(
                f"Add-on '{addon.ref}' belongs to another product.",
                code="addon_not_compatible",
                param="compatibleAddonIds",
            )
    return rows


def _check_trial(pricing_type: PricingType, trial: s.DefaultTrial | None) -> None:
    if trial is not None and pricing_type is not PricingType.PAID:
        raise InvalidRequest("Only paid plans have trials.", code="trial_not_allowed", param="defaultTrial")


async def create_plan(session: AsyncSession, env: EnvironmentRef, data: s.PlanCreate) -> s.PlanOut:
    await _ensure_new(session, Plan, env, data.id, "plan")
    product: Product = await _get(session, Product, env, data.product_id, "product")
    if product.status is CatalogStatus.ARCHIVED:
        raise Unprocessable(
            f"Product '{product.ref}' is archived.", code="product_archived", param="productId"
        )
    _check_trial(data.pricing_type, data.default_trial)
    plan = Plan(
        environment_pk=env.pk,
        ref=data.id,
        product_pk=product.pk,
        name=data.name,
        description=data.description,
        pricing_type=data.pricing_type,
        display_order=data.display_order,
        recommended=data.recommended,
        trial_days=data.default_trial.duration_days if data.default_trial else None,
        metadata_=_meta(data.metadata),
    )
    if data.default_trial:
        plan.trial_end_behavior = data.default_trial.trial_end_behavior
    entitlements = await _build_entitlements(session, env, data.entitlements)
    addons = await _addons_by_ref(session, env, plan, data.compatible_addon_ids)
    charges = await _build_charges(session, env, data.pricing_type, data.charges)
    session.add(plan)
    plan.entitlements = entitlements
    plan.addons = addons
    await session.flush()
    parent = await _resolve_parent(session, env, plan, data.parent_plan_id)
    plan.parent_plan_pk = parent.pk if parent else None
    if charges:
        await _set_charges(session, env, plan, charges, None)
    await session.flush()
    record_change(session, env.pk, "plan", plan.pk, "created")
    return await _render_plan(session, await _reload_plan(session, plan))


async def _reload_plan(session: AsyncSession, plan: Plan) -> Plan:
    await session.refresh(plan, ["product", "parent_plan", "addons"])
    result = await session.scalar(
        select(Plan)
        .where(Plan.pk == plan.pk)
        .options(*_PLAN_OPTIONS)
        .execution_options(populate_existing=True)
    )
    assert result is not None
    return result


async def get_plan(session: AsyncSession, env: EnvironmentRef, ref: str) -> s.PlanOut:
    return await _render_plan(session, await _load_plan(session, env, ref))


async def list_plans(session: AsyncSession, env: EnvironmentRef, q: s.ListQuery) -> Page[s.PlanOut]:
    query = select(Plan).where(Plan.environment_pk == env.pk).options(*_PLAN_OPTIONS)
    query = _status_filter(query, Plan, q.status, PlanStatus)
    if q.product_id:
        query = query.join(Product, Product.pk == Plan.product_pk).where(Product.ref == q.product_id)
    rows, more = await paginate(
        session,
        query,
        Plan,
        environment_pk=env.pk,
        limit=q.limit,
        starting_after=q.starting_after,
        entity="plan",
    )
    versions = await _latest_versions(session, PriceVersion.plan_pk, [p.pk for p in rows])
    return Page(
        data=[plan_out(p, versions.get(p.pk)) for p in rows],
        has_more=more,
        next_cursor=rows[-1].ref if more else None,
    )


async def update_plan(session: AsyncSession, env: EnvironmentRef, ref: str, data: s.PlanUpdate) -> s.PlanOut:
    plan = await _load_plan(session, env, ref)
    if plan.status is PlanStatus.ARCHIVED:
        raise Unprocessable(f"Plan '{ref}' is archived.", code="plan_archived")
    fields = unset_fields(data)
    pricing_type = fields.get("pricing_type", plan.pricing_type)
    if (
        "pricing_type" in fields
        and plan.status is PlanStatus.PUBLISHED
        and pricing_type is not plan.pricing_type
    ):
        raise Unprocessable(
            "A published plan keeps its pricing type.", code="pricing_type_locked", param="pricingType"
        )
    if "default_trial" in fields:
        trial = fields.pop("default_trial")
        _check_trial(pricing_type, trial)
        plan.trial_days = trial.duration_days if trial else None
        if trial:
            plan.trial_end_behavior = trial.trial_end_behavior
    entitlements_changed = False
    if "entitlements" in fields:
        new_entitlements = await _build_entitlements(session, env, fields.pop("entitlements"))
        plan.entitlements.clear()
        await session.flush()
        plan.entitlements.extend(new_entitlements)
        entitlements_changed = True
    if "compatible_addon_ids" in fields:
        plan.addons = await _addons_by_ref(session, env, plan, fields.pop("compatible_addon_ids"))
    if "parent_plan_id" in fields:
        parent = await _resolve_parent(session, env, plan, fields.pop("parent_plan_id"))
        plan.parent_plan_pk = parent.pk if parent else None
        entitlements_changed = True
    latest = (await _latest_versions(session, PriceVersion.plan_pk, [plan.pk])).get(plan.pk)
    if "charges" in fields:
        charges = await _build_charges(session, env, pricing_type, fields.pop("charges"))
        if plan.status is PlanStatus.PUBLISHED and pricing_type is PricingType.PAID and not charges:
            raise Unprocessable("A published paid plan keeps at least one charge.", code="charges_required")
        await _set_charges(session, env, plan, charges, latest)
    elif "pricing_type" in fields and pricing_type is not PricingType.PAID and latest and latest.charges:
        raise InvalidRequest(
            "Remove the charges before making the plan free or custom.", code="charges_not_allowed"
        )
    for field, value in fields.items():
        setattr(
            plan,
            "metadata_" if field == "metadata" else field,
            _meta(value) if field == "metadata" else value,
        )
    await session.flush()
    if entitlements_changed:
        await invalidate_entitlements_for_plan(session, plan.pk)
    record_change(session, env.pk, "plan", plan.pk, "updated")
    return await _render_plan(session, await _reload_plan(session, plan))


async def publish_plan(session: AsyncSession, env: EnvironmentRef, ref: str) -> s.PlanOut:
    plan = await _load_plan(session, env, ref)
    if plan.status is PlanStatus.ARCHIVED:
        raise Unprocessable(f"Plan '{ref}' is archived.", code="plan_archived")
    latest = (await _latest_versions(session, PriceVersion.plan_pk, [plan.pk])).get(plan.pk)
    if plan.pricing_type is PricingType.PAID and (latest is None or not latest.charges):
        raise Unprocessable(
            "A paid plan needs at least one charge before it is published.", code="charges_required"
        )
    if plan.parent_plan is not None and plan.parent_plan.status is not PlanStatus.PUBLISHED:
        raise Unprocessable("Publish the parent plan first.", code="parent_plan_not_published")
    plan.status = PlanStatus.PUBLISHED
    await session.flush()
    record_change(session, env.pk, "plan", plan.pk, "published")
    return plan_out(plan, latest)


async def archive_plan(session: AsyncSession, env: EnvironmentRef, ref: str) -> s.PlanOut:
    plan = await _load_plan(session, env, ref)
    children = await session.scalar(
        select(func.count()).where(Plan.parent_plan_pk == plan.pk, Plan.status != PlanStatus.ARCHIVED)
    )
    if children:
        raise Conflict("Other plans build on this one; archive or re-parent them first.", code="plan_in_use")
    plan.status = PlanStatus.ARCHIVED
    await session.flush()
    record_change(session, env.pk, "plan", plan.pk, "archived")
    return await _render_plan(session, plan)


async def list_plan_price_versions(
    session: AsyncSession, env: EnvironmentRef, ref: str
) -> list[s.PriceVersionOut]:
    from app.subscriptions.models import Subscription  # counted here, owned there

    plan: Plan = await _get(session, Plan, env, ref, "plan")
    versions = (
        await session.scalars(
            select(PriceVersion)
            .where(PriceVersion.plan_pk == plan.pk)
            .order_by(PriceVersion.version.desc())
            .options(selectinload(PriceVersion.charges).joinedload(Charge.feature))
        )
    ).all()
    counted = await session.execute(
        select(Subscription.price_version_pk, func.count())
        .where(Subscription.plan_pk == plan.pk)
        .group_by(Subscription.price_version_pk)
    )
    counts = {version_pk: count for version_pk, count in counted}
    return [
        s.PriceVersionOut(
            version=v.version,
            created_at=v.created_at,
            charges=[charge_out(c) for c in v.charges],
            subscription_count=int(counts.get(v.pk, 0)),
        )
        for v in versions
    ]


# ---- add-ons --------------------------------------------------------------------------------

_ADDON_OPTIONS = (
    joinedload(Addon.product),
    selectinload(Addon.entitlements).joinedload(Entitlement.feature),
    selectinload(Addon.plans),
)


def addon_out(addon: Addon, version: PriceVersion | None) -> s.AddonOut:
    return s.AddonOut(
        id=addon.ref,
        product_id=addon.product.ref,
        name=addon.name,
        description=addon.description,
        pricing_type=addon.pricing_type,
        status=addon.status,
        display_order=addon.display_order,
        max_quantity=addon.max_quantity,
        entitlements=[entitlement_out(e) for e in sorted(addon.entitlements, key=lambda e: e.display_order)],
        price_version=version.version if version else None,
        charges=[charge_out(c) for c in version.charges] if version else [],
        compatible_plan_ids=sorted(p.ref for p in addon.plans),
        metadata=addon.metadata_,
        created_at=addon.created_at,
        updated_at=addon.updated_at,
    )


async def _load_addon(session: AsyncSession, env: EnvironmentRef, ref: str) -> Addon:
    return await _get(session, Addon, env, ref, "addon", *_ADDON_OPTIONS)


async def _render_addon(session: AsyncSession, addon_pk: int) -> s.AddonOut:
    addon = await session.scalar(
        select(Addon)
        .where(Addon.pk == addon_pk)
        .options(*_ADDON_OPTIONS)
        .execution_options(populate_existing=True)
    )
    assert addon is not None
    versions = await _latest_versions(session, PriceVersion.addon_pk, [addon.pk])
    return addon_out(addon, versions.get(addon.pk))


async def create_addon(session: AsyncSession, env: EnvironmentRef, data: s.AddonCreate) -> s.AddonOut:
    await _ensure_new(session, Addon, env, data.id, "addon")
    product: Product = await _get(session, Product, env, data.product_id, "product")
    addon = Addon(
        environment_pk=env.pk,
        ref=data.id,
        product_pk=product.pk,
        name=data.name,
        description=data.description,
        pricing_type=data.pricing_type,
        display_order=data.display_order,
        max_quantity=data.max_quantity,
        metadata_=_meta(data.metadata),
    )
    addon.entitlements = await _build_entitlements(session, env, data.entitlements)
    charges = await _build_charges(session, env, data.pricing_type, data.charges)
    session.add(addon)
    await session.flush()
    if charges:
        await _set_charges(session, env, addon, charges, None)
    record_change(session, env.pk, "addon", addon.pk, "created")
    return await _render_addon(session, addon.pk)


async def get_addon(session: AsyncSession, env: EnvironmentRef, ref: str) -> s.AddonOut:
    addon = await _load_addon(session, env, ref)
    versions = await _latest_versions(session, PriceVersion.addon_pk, [addon.pk])
    return addon_out(addon, versions.get(addon.pk))


async def list_addons(session: AsyncSession, env: EnvironmentRef, q: s.ListQuery) -> Page[s.AddonOut]:
    query = select(Addon).where(Addon.environment_pk == env.pk).options(*_ADDON_OPTIONS)
    query = _status_filter(query, Addon, q.status, PlanStatus)
    if q.product_id:
        query = query.join(Product, Product.pk == Addon.product_pk).where(Product.ref == q.product_id)
    rows, more = await paginate(
        session,
        query,
        Addon,
        environment_pk=env.pk,
        limit=q.limit,
        starting_after=q.starting_after,
        entity="addon",
    )
    versions = await _latest_versions(session, PriceVersion.addon_pk, [a.pk for a in rows])
    return Page(
        data=[addon_out(a, versions.get(a.pk)) for a in rows],
        has_more=more,
        next_cursor=rows[-1].ref if more else None,
    )


async def update_addon(
    session: AsyncSession, env: EnvironmentRef, ref: str, data: s.AddonUpdate
) -> s.AddonOut:
    addon = await _load_addon(session, env, ref)
    if addon.status is PlanStatus.ARCHIVED:
        raise Unprocessable(f"Add-on '{ref}' is archived.", code="addon_archived")
    fields = unset_fields(data)
    pricing_type = fields.get("pricing_type", addon.pricing_type)
    if "entitlements" in fields:
        new_entitlements = await _build_entitlements(session, env, fields.pop("entitlements"))
        addon.entitlements.clear()
        await session.flush()
        addon.entitlements.extend(new_entitlements)
        await invalidate_entitlements_for_addon(session, addon.pk)
    if "charges" in fields:
        charges = await _build_charges(session, env, pricing_type, fields.pop("charges"))
        latest = (await _latest_versions(session, PriceVersion.addon_pk, [addon.pk])).get(addon.pk)
        await _set_charges(session, env, addon, charges, latest)
    for field, value in fields.items():
        setattr(
            addon,
            "metadata_" if field == "metadata" else field,
            _meta(value) if field == "metadata" else value,
        )
    await session.flush()
    record_change(session, env.pk, "addon", addon.pk, "updated")
    return await _render_addon(session, addon.pk)


async def publish_addon(session: AsyncSession, env: EnvironmentRef, ref: str) -> s.AddonOut:
    addon = await _load_addon(session, env, ref)
    if addon.status is PlanStatus.ARCHIVED:
        raise Unprocessable(f"Add-on '{ref}' is archived.", code="addon_archived")
    latest = (await _latest_versions(session, PriceVersion.addon_pk, [addon.pk])).get(addon.pk)
    if addon.pricing_type is PricingType.PAID and (latest is None or not latest.charges):
        raise Unprocessable("A paid add-on needs a charge before it is published.", code="charges_required")
    addon.status = PlanStatus.PUBLISHED
    await session.flush()
    record_change(session, env.pk, "addon", addon.pk, "published")
    return addon_out(addon, latest)


async def archive_addon(session: AsyncSession, env: EnvironmentRef, ref: str) -> s.AddonOut:
    addon = await _load_addon(session, env, ref)
    addon.status = PlanStatus.ARCHIVED
    await session.flush()
    record_change(session, env.pk, "addon", addon.pk, "archived")
    return await _render_addon(session, addon.pk)


# ---- coupons --------------------------------------------------------------------------------


def coupon_out(c: Coupon) -> s.CouponOut:
    return s.CouponOut(
        id=c.ref,
        name=c.name,
        description=c.description,
        percent_off=c.percent_off_bp / 100 if c.percent_off_bp is not None else None,
        amount_off=c.amount_off,
        currency=c.currency,
        duration=c.duration,
        duration_in_months=c.duration_in_months,
        status=c.status,
        metadata=c.metadata_,
        created_at=c.created_at,
        updated_at=c.updated_at,
    )


def _percent_to_basis_points(percent: Decimal) -> int:
    basis_points = percent * 100
    if basis_points != basis_points.to_integral_value() or not 0 < basis_points <= 10_000:
        raise InvalidRequest(
            "percentOff is above 0, at most 100, with at most two decimals.",
            code="invalid_percent_off",
            param="percentOff",
        )
    return int(basis_points)


async def create_coupon(session: AsyncSession, env: EnvironmentRef, data: s.CouponCreate) -> s.CouponOut:
    await _ensure_new(session, Coupon, env, data.id, "coupon")
    if (data.percent_off is None) == (data.amount_off is None):
        raise InvalidRequest("Give either percentOff or amountOff.", code="invalid_discount")
    if data.amount_off is not None and data.currency is None:
        raise InvalidRequest("An amount off needs its currency.", code="currency_required", param="currency")
    if data.percent_off is not None and data.currency is not None:
        raise InvalidRequest("A percent off takes no currency.", code="invalid_discount", param="currency")
    if (data.duration is DiscountDuration.REPEATING) != (data.duration_in_months is not None):
        raise InvalidRequest(
            "durationInMonths goes with, and only with, a REPEATING duration.",
            code="invalid_duration",
            param="durationInMonths",
        )
    coupon = Coupon(
        environment_pk=env.pk,
        ref=data.id,
        name=data.name,
        description=data.description,
        percent_off_bp=_percent_to_basis_points(data.percent_off) if data.percent_off is not None else None,
        amount_off=data.amount_off,
        currency=normalize_currency(data.currency) if data.currency else None,
        duration=data.duration,
        duration_in_months=data.duration_in_months,
        metadata_=_meta(data.metadata),
    )
    session.add(coupon)
    await session.flush()
    record_change(session, env.pk, "coupon", coupon.pk, "created")
    return coupon_out(coupon)


async def get_coupon(session: AsyncSession, env: EnvironmentRef, ref: str) -> s.CouponOut:
    return coupon_out(await _get(session, Coupon, env, ref, "coupon"))


async def list_coupons(session: AsyncSession, env: EnvironmentRef, q: s.ListQuery) -> Page[s.CouponOut]:
    return await _list_simple(session, env, q, Coupon, "coupon", coupon_out)


async def update_coupon(
    session: AsyncSession, env: EnvironmentRef, ref: str, data: s.CouponUpdate
) -> s.CouponOut:
    coupon: Coupon = await _get(session, Coupon, env, ref, "coupon")
    for field, value in unset_fields(data).items():
        setattr(
            coupon,
            "metadata_" if field == "metadata" else field,
            _meta(value) if field == "metadata" else value,
        )
    await session.flush()
    record_change(session, env.pk, "coupon", coupon.pk, "updated")
    return coupon_out(coupon)


async def archive_coupon(session: AsyncSession, env: EnvironmentRef, ref: str) -> s.CouponOut:
    coupon: Coupon = await _get(session, Coupon, env, ref, "coupon")
    coupon.status = CatalogStatus.ARCHIVED
    await session.flush()
    record_change(session, env.pk, "coupon", coupon.pk, "archived")
    return coupon_out(coupon)
