-- Hands the objects of an older layout (made by the superuser who runs this) in the current
-- database to the database's owner, the service's role named as the database (misp_<service>).
-- Run by deploy/local/postgres.sh and deploy/docker/postgres-init.sh, once per service database.
DO $$ DECLARE r record; BEGIN
  FOR r IN SELECT format('ALTER %s %s OWNER TO %I', CASE c.relkind WHEN 'S' THEN 'SEQUENCE'
             WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END,
             c.oid::regclass, current_database()) AS stmt
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
             AND pg_get_userbyid(c.relowner) = current_user
             AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid
                             AND d.deptype IN ('a', 'i', 'e'))
  UNION ALL SELECT format('ALTER FUNCTION %s OWNER TO %I', p.oid::regprocedure,
             current_database())
           FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
           WHERE n.nspname = 'public' AND pg_get_userbyid(p.proowner) = current_user
             AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
  LOOP EXECUTE r.stmt; END LOOP; END $$;
