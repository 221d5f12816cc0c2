-- Compiles the woe_anchor Python package once per session, cached in GD under its version.
CREATE FUNCTION woe_anchor_internal.load_package() RETURNS void
LANGUAGE plpython3u VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $woe_anchor_py$
import sys, types
if @PACKAGE_KEY@ not in GD:
    name = @PACKAGE_NAME@
    package = types.ModuleType(name)
    package.__path__, package.__package__ = [], name
    package.VERSION, package.CODE_SHA256 = @EXTVERSION@, @CODE_SHA256@
    sys.modules[name] = package
    for module_name, source in @MODULES@:
        module = types.ModuleType(f"{name}.{module_name}")
        module.__package__ = name
        sys.modules[module.__name__] = module
        exec(compile(source, f"<woe_anchor {module_name}>", "exec"), module.__dict__)
        setattr(package, module_name, module)
    GD[@PACKAGE_KEY@] = package
$woe_anchor_py$;

COMMENT ON FUNCTION woe_anchor_internal.load_package() IS 'woe_anchor internal: loads the Python package into the session';
