with

source as (

    select * from {{ source('warehouse', 'events') }}

),

renamed as (

    select
        -- keys
        tenant_id,
        event_id,
        landing_id,
        batch_id,

        -- what happened
        event_type,
        category,
        source,
        wire_format,

        -- who
        user_id,
        anonymous_id,
        session_id,

        -- about what
        entity_type,
        entity_id,
        idempotency_key,
        correlation_id,

        -- when
        occurred_at,
        client_occurred_at,
        sent_at,
        received_at,
        processed_at,

        -- where
        page_url,
        page_path,
        page_referrer,
        page_title,

        -- with what
        user_agent,
        browser,
        browser_version,
        os,
        device,
        device_type,
        is_bot,
        locale,
        timezone,
        ip_prefix,
        country,

        -- from where
        referrer_medium,
        utm_source,
        utm_medium,
        utm_campaign,
        utm_term,
        utm_content,

        props

    from source

),

final as (

    select
        *,
        -- the person behind the event, as far as this event alone tells
        coalesce(user_id, anonymous_id) as visitor_id,
        cast((occurred_at at time zone 'UTC') as date) as event_date

    from renamed

)

select * from final
